"""Queueing a fine-tuning job: every refusal the database alone can decide, before the row."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import InsufficientTrainingData, JobRunning
from app.gallery import jobs_repo, models_repo, training_faces_repo
from app.pipeline.embedders import resolve_embedder_name
from app.schemas.finetune import FinetuneParams
from app.training.split import check_fraction, held_out, refuse_too_few


def queue_job(
    settings: Settings,
    sessions: sessionmaker[Session],
    params: FinetuneParams,
    owner: jobs_repo.Owner,
) -> str:
    """The id of a new queued job, or the error the client gets instead of a job.

    JobRunning while another job holds the slot, decided by the database even against
    another process; then the refusals the job itself would end with (a fraction larger
    than the serving model's lineage allows, too few faces to train or validate on).
    The job checks again when it runs: the gallery may change in between.
    """
    try:
        with sessions.begin() as session:
            jobs_repo.refuse_if_running(session)
            check_gallery(session, settings, params.validation_fraction)
            return jobs_repo.create_job(session, params.model_dump(), owner).id
    except JobRunning as error:
        if error.details is None:  # lost a race at the index: name the job that won it
            with sessions() as session:
                jobs_repo.refuse_if_running(session)
        raise


def check_gallery(session: Session, settings: Settings, fraction: float) -> None:
    """Raise what `run_finetune` would fail with, as far as the database alone tells.

    Only necessary conditions: a crop that fails to decode, or a near-duplicate set
    aside, can still fail the job, but nothing refused here could have succeeded.
    """
    name = resolve_embedder_name(settings.embedder, settings.models_dir)
    serving = models_repo.active_model(session, name)
    if serving is not None:  # else the packaged weights, which no job trained
        check_fraction(session, serving.id, fraction)
    subjects = training_faces_repo.count_trainable_subjects(session)
    if subjects < 2:
        raise InsufficientTrainingData(
            "Fine-tuning needs at least two subjects with two or more stored face crops each; "
            f"the gallery has {subjects}."
        )
    with training_faces_repo.trainable_faces(session) as faces:
        check_split(faces, subjects, fraction)


def check_split(faces: Iterable[tuple[int, object]], subjects: int, fraction: float) -> None:
    """Refuse, from `faces` ((face id, subject) of `subjects` subjects) alone, a gallery that
    `split.split_faces` is sure to refuse: setting near-duplicates aside (which needs
    vectors) only shrinks validation. In constant memory, and reading on only until the
    split is known to work: one held-out face and two subjects to train on, which a large
    gallery has within its first rows.
    """
    held = 0
    training: set[object] = set()  # two are enough to know
    for face_id, subject in faces:
        if held_out(face_id, fraction):
            held += 1
        elif len(training) < 2:
            training.add(subject)
        if held and len(training) == 2:
            return
    # Every face was read. With none held out, every subject has faces to train on.
    refuse_too_few(fraction, held, subjects if held == 0 else len(training))

"""Queueing a fine-tuning job: refused up front for what the database can tell, one at a time."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import FaceServiceError, InsufficientTrainingData, InvalidRequest, JobRunning
from app.gallery import jobs_repo, models_repo, repository
from app.schemas.finetune import FinetuneParams
from app.training import admission
from app.training.admission import queue_job
from app.training.split import check_splittable, held_out, split_faces

OWNER = jobs_repo.Owner("host-a", 11)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", embedder="arcface-mbf")


def store_faces(sessions: sessionmaker[Session], per_subject: list[int]) -> list[int]:
    """Faces with a stored crop, as many per subject as asked; their ids. The crops are
    never decoded: the checks before a job read ids alone."""
    ids = []
    with sessions.begin() as s:
        for n, count in enumerate(per_subject):
            subject = repository.create_subject(s, f"person {n}").id
            for _ in range(count):
                face = repository.add_face(
                    s,
                    subject,
                    box=[0.0, 0.0, 10.0, 10.0],
                    landmarks=[[1.0, 1.0]] * 5,
                    quality={},
                    image_sha256="0" * 64,
                    crop=b"png",
                    crop_landmarks=[[1.0, 1.0]] * 5,
                    model="m@0",
                    vector=np.full(512, 512**-0.5, dtype=np.float32),
                )
                ids.append(face.id)
    return ids


def queue(settings: Settings, sessions: sessionmaker[Session], **params: Any) -> str:
    return queue_job(settings, sessions, FinetuneParams(**params), OWNER)


def job_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return len(jobs_repo.list_jobs(s))


def test_a_gallery_the_job_can_train_on_gets_a_queued_job(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    store_faces(sessions, [3, 3, 3])  # ids 1-9: 2 and 8 are held out at 0.25
    job_id = queue(settings, sessions)
    with sessions() as s:
        assert jobs_repo.get_job(s, job_id).state == "queued"
    error = pytest.raises(JobRunning, queue, settings, sessions).value
    assert error.details == {"job_id": job_id, "state": "queued"}


@pytest.mark.parametrize(
    ("per_subject", "message"),
    [
        ([], "the gallery has 0"),
        ([5, 1], "the gallery has 1"),  # one face is no subject to learn from
        ([3, 3, 3], "holds out 0 faces"),  # see the fraction below
    ],
)
def test_too_few_faces_are_refused_before_any_job(
    settings: Settings, sessions: sessionmaker[Session], per_subject: list[int], message: str
) -> None:
    ids = store_faces(sessions, per_subject)
    # Below every stored face's hash: nothing to validate on.
    fraction = min([_hash_fraction(i) for i in ids], default=0.5) / 2
    with pytest.raises(InsufficientTrainingData, match=message):
        queue(settings, sessions, validation_fraction=fraction)
    assert job_count(sessions) == 0


def test_a_fraction_larger_than_the_lineage_used_is_refused_before_any_job(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    store_faces(sessions, [3, 3, 3])
    with sessions.begin() as s:
        trained_by = jobs_repo.create_job(s, {"validation_fraction": 0.2}).id
        jobs_repo.finish_job(s, trained_by, jobs_repo.SUCCEEDED)
        models_repo.ensure_model(s, "arcface-mbf@tuned", "arcface-mbf", "1" * 64, job_id=trained_by)
        models_repo.activate(s, "arcface-mbf@tuned")
    error = pytest.raises(InvalidRequest, queue, settings, sessions, validation_fraction=0.3).value
    assert error.details == {"validation_fraction": 0.3, "lineage_validation_fraction": 0.2}
    assert job_count(sessions) == 1  # the finished one only
    assert queue(settings, sessions, validation_fraction=0.2)


def test_the_up_front_split_check_never_refuses_a_split_that_succeeds() -> None:
    """Necessary only: near-duplicates, which need vectors, are left to the job."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        faces = int(rng.integers(2, 12))
        face_ids = rng.choice(10_000, size=faces, replace=False).astype(np.int64)
        labels = rng.integers(0, 3, size=faces).astype(np.int64)
        vectors = rng.standard_normal((faces, 4))
        vectors[rng.random(faces) < 0.5] = 1.0  # some near-duplicate groups
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        fraction = float(rng.uniform(0.05, 0.6))
        try:
            split_faces(face_ids, labels, vectors, fraction)
        except InsufficientTrainingData:
            continue
        check_splittable(face_ids, labels, fraction)  # must not raise


def test_two_processes_queueing_at_once_get_one_job_and_one_conflict(
    settings: Settings, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    race_two_queues(settings, sessions, monkeypatch)


def race_two_queues(
    settings: Settings, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both pass the check for a running job before either inserts: only the database's
    index can refuse the second. (Also run on PostgreSQL, from tests/postgres.)"""
    store_faces(sessions, [3, 3, 3])
    both_checked = threading.Barrier(2, timeout=30)
    check_gallery = admission.check_gallery

    def then_wait(*args: Any) -> None:
        check_gallery(*args)
        both_checked.wait()

    monkeypatch.setattr(admission, "check_gallery", then_wait)
    outcomes: list[str | FaceServiceError] = []

    def attempt() -> None:
        try:
            outcomes.append(queue(settings, sessions))
        except FaceServiceError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    (job_id,) = [o for o in outcomes if isinstance(o, str)]
    (refused,) = [o for o in outcomes if isinstance(o, FaceServiceError)]
    assert isinstance(refused, JobRunning) and refused.status_code == 409
    assert refused.details == {"job_id": job_id, "state": "queued"}
    with sessions() as s:
        assert [j.id for j in jobs_repo.unfinished_jobs(s)] == [job_id]


def _hash_fraction(face_id: int) -> float:
    """The smallest fraction that holds `face_id` out, to within 1e-9."""
    low, high = 0.0, 1.0
    while high - low > 1e-9:
        middle = (low + high) / 2
        low, high = (low, middle) if held_out(face_id, middle) else (middle, high)
    return high

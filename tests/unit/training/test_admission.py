"""Queueing a fine-tuning job: refused up front for what the database can tell, one at a time."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import FaceServiceError, InsufficientTrainingData, InvalidRequest, JobRunning
from app.gallery import jobs_repo, models_repo, repository
from app.gallery.orm import Face
from app.schemas.finetune import FinetuneParams
from app.training import admission
from app.training.admission import check_split, queue_job
from app.training.split import held_out, refuse_too_few, split_faces

OWNER = jobs_repo.Owner("host-a", 11)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", embedder="arcface-mbf")


def store_faces(
    sessions: sessionmaker[Session], per_subject: list[int], *, crops: bool = True
) -> list[int]:
    """Faces with a stored crop (or, `crops=False`, with none), as many per subject as asked;
    their ids. The crops are never decoded: the checks before a job read ids alone."""
    return [
        face_id
        for count in per_subject
        for face_id in add_faces(sessions, new_subject(sessions), count, crops=crops)
    ]


def new_subject(sessions: sessionmaker[Session]) -> str:
    with sessions.begin() as s:
        return repository.create_subject(s, "person").id


def add_faces(
    sessions: sessionmaker[Session], subject: str, count: int, *, crops: bool = True
) -> list[int]:
    with sessions.begin() as s:
        faces = [
            repository.add_face(
                s,
                subject,
                box=[0.0, 0.0, 10.0, 10.0],
                landmarks=[[1.0, 1.0]] * 5,
                quality={},
                image_sha256="0" * 64,
                crop=b"png" if crops else None,
                crop_landmarks=[[1.0, 1.0]] * 5 if crops else None,
                model="m@0",
                vector=np.full(512, 512**-0.5, dtype=np.float32),
            )
            for _ in range(count)
        ]
        return [face.id for face in faces]


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
    assert error.details == [
        {
            "loc": ["body", "validation_fraction"],
            "msg": "at most 0.2, the fraction arcface-mbf@tuned's lineage held out",
            "type": "validation_overlap",
        }
    ]
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
        subjects = len(np.unique(labels))
        up_front = refusal(check_split, zip(face_ids, labels, strict=True), subjects, fraction)
        # The same refusal, word for word, as from every face in memory.
        assert up_front == refusal(check_splittable, face_ids, labels, fraction)
        if refusal(split_faces, face_ids, labels, vectors, fraction) is None:
            assert up_front is None


def check_splittable(face_ids: np.ndarray, labels: np.ndarray, fraction: float) -> None:
    """The check as admission made it with every face id in memory: the reference."""
    held = np.array([held_out(int(i), fraction) for i in face_ids], dtype=bool)
    refuse_too_few(fraction, int(held.sum()), len(np.unique(labels[~held])))


def refusal(check: Callable[..., object], *args: Any) -> str | None:
    try:
        check(*args)
    except InsufficientTrainingData as error:
        return str(error)
    return None


def refusal_from_every_face(session: Session, fraction: float) -> str | None:
    """What admission answered when it read every trainable face into memory."""
    rows = session.execute(
        select(Face.id, Face.subject_id).where(
            Face.crop.is_not(None), Face.crop_landmarks.is_not(None)
        )
    ).all()
    per_subject = Counter(subject for _, subject in rows)
    kept = [(face_id, subject) for face_id, subject in rows if per_subject[subject] >= 2]
    face_ids = np.array([face_id for face_id, _ in kept], dtype=np.int64)
    _, labels = np.unique(np.array([s for _, s in kept], dtype=object), return_inverse=True)
    subjects = len(np.unique(labels))
    if subjects < 2:
        return (
            "Fine-tuning needs at least two subjects with two or more stored face crops each; "
            f"the gallery has {subjects}."
        )
    return refusal(check_splittable, face_ids, labels.astype(np.int64), fraction)


def test_the_gallery_check_decides_as_reading_every_face_did(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    """A gallery grown at random, faces without crops among them: at each step and for
    fractions from none held out to most, the same answer, message included."""
    rng = np.random.default_rng(3)
    ids: list[int] = []
    subjects: list[str] = []
    compared = refused = 0
    for step in range(14):
        if step % 3 == 2:  # a face of an earlier subject, with or without its crop
            subject = subjects[int(rng.integers(len(subjects)))]
            ids += add_faces(sessions, subject, 1, crops=bool(rng.integers(2)))
        else:
            subjects.append(new_subject(sessions))
            ids += add_faces(sessions, subjects[-1], int(rng.integers(1, 4)), crops=step != 4)
        lowest = min(_hash_fraction(i) for i in ids)
        for fraction in (lowest / 2, lowest, 0.05, 0.3, 0.9):
            with sessions() as s:
                expected = refusal_from_every_face(s, fraction)
                assert refusal(admission.check_gallery, s, settings, fraction) == expected
            compared += 1
            refused += expected is not None
    assert 0 < refused < compared  # both answers were compared


def test_the_fewest_faces_that_can_train_are_admitted_and_one_fewer_is_not(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    ada, bob, cy = (new_subject(sessions) for _ in range(3))
    trainable = add_faces(sessions, ada, 2) + add_faces(sessions, bob, 1)
    add_faces(sessions, bob, 3, crops=False)  # faces without a crop train no one
    with pytest.raises(InsufficientTrainingData, match=r"the gallery has 1\."):
        queue(settings, sessions, validation_fraction=0.5)
    trainable += add_faces(sessions, bob, 1) + add_faces(sessions, cy, 2)
    # At `lowest` one face is held out, the one with the lowest hash; just below it, none.
    lowest = min(_hash_fraction(i) for i in trainable)
    below = lowest - 2e-9
    with pytest.raises(InsufficientTrainingData) as raised:
        queue(settings, sessions, validation_fraction=below)
    assert str(raised.value) == (
        f"With validation_fraction={below}, the split holds out 0 faces and leaves 3 "
        "subjects to train on; fine-tuning needs at least one held-out face and two subjects "
        "to train on."
    )
    assert job_count(sessions) == 0
    assert queue(settings, sessions, validation_fraction=lowest)


def test_a_large_gallery_is_admitted_from_its_first_faces() -> None:
    """Once a face is held out and two subjects have one to train on, the rest can't
    change the answer: a million faces are not read, let alone kept."""
    read = 0

    def gallery() -> Iterator[tuple[int, str]]:
        nonlocal read
        for face_id in range(1, 1_000_001):
            read += 1
            yield face_id, f"subject {face_id % 1000}"

    check_split(gallery(), 1000, 0.2)
    assert 2 <= read < 100


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

"""Chained fine-tunes on real faces: each job validates only on faces no model trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.gallery import jobs_repo, models_repo, repository
from app.pipeline.analyzer import FacePipeline
from app.pipeline.image_io import decode_image
from app.schemas.finetune import FinetuneParams
from app.services.recognition import points_of
from app.services.runtime import quality_limits
from app.training import finetune, split
from app.training.worker import run_job

PEOPLE = ("amy", "bernadette", "howard", "leonard", "penny", "raj", "sheldon", "stuart")
QUICK = {"epochs": 1, "micro_batch_size": 8, "accumulation_steps": 1, "device": "cpu"}
Sides = dict[str, set[int]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", models_dir=tmp_path / "models", embedder="arcface-mbf"
    )


@pytest.fixture
def splits(monkeypatch: pytest.MonkeyPatch) -> list[Sides]:
    """The face ids on each side of every split a job draws, in job order."""
    drawn: list[Sides] = []

    def recording(face_ids: Any, *args: Any) -> split.Split:
        drawn_split = split.split_faces(face_ids, *args)
        sides = ("train", "validation", "set_aside")
        drawn.append({side: set(face_ids[getattr(drawn_split, side)].tolist()) for side in sides})
        return drawn_split

    monkeypatch.setattr(finetune, "split_faces", recording)
    return drawn


def enrol(
    sessions: sessionmaker[Session],
    pipeline: FacePipeline,
    root: Path,
    photos: range,
    subjects: dict[str, str],
) -> dict[str, list[int]]:
    """Photos `photos` of each person, stored the way enrolment stores them: face ids.

    `subjects` maps each person to a subject id; missing people are created into it.
    """
    enrolled: dict[str, list[int]] = {}
    with sessions.begin() as session:
        for person in PEOPLE:
            if person not in subjects:
                subjects[person] = repository.create_subject(session, person).id
            subject = subjects[person]
            for n in photos:
                path = root / f"faceapi_js/{person}/{person}{n}.png"
                image = decode_image(path.read_bytes(), 10**8)
                analyzed = pipeline.analyze(image)
                if not analyzed:
                    continue  # bernadette5.png: no detectable face
                crop = pipeline.stored_crop(image, analyzed[0].face)
                face = repository.add_face(
                    session,
                    subject,
                    box=list(analyzed[0].face.box),
                    landmarks=points_of(analyzed[0].face.landmarks),
                    quality={},
                    image_sha256=path.name,
                    crop=crop.png,
                    crop_landmarks=points_of(crop.landmarks),
                    model=pipeline.embedder.version,
                    vector=pipeline.embed(analyzed)[0],
                )
                enrolled.setdefault(person, []).append(face.id)
    return enrolled


def run(settings: Settings, sessions: sessionmaker[Session], **params: Any) -> dict[str, Any]:
    with sessions.begin() as session:
        job_id = jobs_repo.create_job(session, FinetuneParams(**QUICK | params).model_dump()).id
    run_job(settings, sessions, job_id)
    with sessions() as session:
        job = jobs_repo.get_job(session, job_id)
        return {"state": job.state, "error": job.error, "result": job.result}


def test_a_chained_job_validates_on_no_face_its_base_model_trained_on(
    settings: Settings,
    sessions: sessionmaker[Session],
    splits: list[Sides],
    models: Any,
    shared_faces: Path,
) -> None:
    """The audit's chain: a job with seed 11 promoted, then a default job (seed 0). It
    validated on 19 faces its serving model had trained on, so its "before" looked perfect."""
    pipeline = FacePipeline(models.detector, models.embedder, quality_limits(Settings()))
    subjects: dict[str, str] = {}
    enrolled = enrol(sessions, pipeline, shared_faces, range(1, 5), subjects)
    first = run(settings, sessions, seed=11, force=True)
    assert first["state"] == "succeeded", first["error"]
    tuned = first["result"]["model_id"]
    with sessions() as session:
        assert models_repo.active_model(session, "arcface-mbf").id == tuned  # type: ignore[union-attr]

    # Enrolments change between the jobs: a face deleted, a photo more of each person.
    with sessions.begin() as session:
        repository.delete_face(session, subjects["amy"], enrolled["amy"][0])
    enrol(sessions, pipeline, shared_faces, range(5, 6), subjects)
    second = run(settings, sessions, seed=0)
    assert second["state"] == "succeeded", second["error"]
    assert second["result"]["base_model"] == tuned

    before, after = splits
    assert before["validation"] and after["validation"]
    assert not before["train"] & after["validation"]
    assert not before["validation"] & after["train"]
    common = (before["train"] | before["validation"]) & (after["train"] | after["validation"])
    assert before["validation"] & common == after["validation"] & common

    # A larger validation_fraction would hold out faces the serving model trained on.
    larger = run(settings, sessions, validation_fraction=0.5)
    assert larger["state"] == "failed" and "validation_fraction 0.5" in larger["error"]
    assert len(splits) == 2

from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch.nn.functional as F

from app.training.loop import LoopConfig, NonFiniteLoss, Progress, effective_batch_size, train

MICRO = 2


def micro_batches(x, y, size=MICRO):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def full_batch_grads(model, x, y):
    model = copy.deepcopy(model)
    F.cross_entropy(model(x), y).backward()
    return [p.grad.clone() for p in model.parameters()], model


def all_close(a, b):
    return all(torch.allclose(p, q, rtol=1e-10, atol=1e-12) for p, q in zip(a, b, strict=True))


def run(optimizer_class, model, batches, n, lr=0.1, **kwargs):
    optimizer = optimizer_class(model.parameters(), lr=lr)
    result = train(
        lambda batch: F.cross_entropy(model(batch[0]), batch[1]),
        lambda epoch: batches,
        optimizer,
        kwargs.pop("config", LoopConfig(epochs=1, accumulation_steps=n)),
        **kwargs,
    )
    return optimizer, result


def test_accumulated_gradients_and_step_equal_one_full_batch(data, make_model, recording_sgd):
    x, y = data[0][:8], data[1][:8]
    model = make_model()
    expected, reference = full_batch_grads(model, x, y)
    torch.optim.SGD(reference.parameters(), lr=0.1).step()

    optimizer, result = run(recording_sgd, model, micro_batches(x, y), n=4)

    assert (result.steps, result.micro_batches, result.stopped) == (1, 4, False)
    assert all_close(optimizer.recorded[0], expected)
    assert all_close(list(model.parameters()), list(reference.parameters()))


def test_naive_zero_grad_every_micro_batch_does_not_match(data, make_model, recording_sgd):
    # The well-known bug: zero_grad() inside the micro-batch loop keeps only the last one.
    x, y = data[0][:8], data[1][:8]
    model = make_model()
    expected, _ = full_batch_grads(model, x, y)
    optimizer = recording_sgd(model.parameters(), lr=0.1)
    for i, (xb, yb) in enumerate(micro_batches(x, y), start=1):
        optimizer.zero_grad()
        (F.cross_entropy(model(xb), yb) / 4).backward()
        if i % 4 == 0:
            optimizer.step()

    assert len(optimizer.recorded) == 1
    assert not all_close(optimizer.recorded[0], expected)


def test_steps_once_per_group_and_weights_partial_group_as_its_mean(
    data, make_model, recording_sgd
):
    x, y = data
    model = make_model()
    initial = copy.deepcopy(model)
    # lr=0 keeps the weights fixed, so each group has an exact full-batch reference.
    optimizer, result = run(recording_sgd, model, micro_batches(x, y), n=4, lr=0.0)

    assert (result.steps, result.micro_batches) == (3, 10)
    assert len(optimizer.recorded) == 3
    assert optimizer.zero_grad_calls == 1 + 3
    for recorded, (start, stop) in zip(
        optimizer.recorded, [(0, 8), (8, 16), (16, 20)], strict=True
    ):
        expected, _ = full_batch_grads(initial, x[start:stop], y[start:stop])
        assert all_close(recorded, expected)


def test_partial_groups_do_not_carry_over_epochs(data, make_model, recording_sgd):
    x, y = data
    model = make_model()
    config = LoopConfig(epochs=2, accumulation_steps=4)
    optimizer, result = run(recording_sgd, model, micro_batches(x, y), n=4, lr=0.0, config=config)

    assert (result.steps, result.micro_batches) == (6, 20)
    expected, _ = full_batch_grads(make_model(), x[16:20], y[16:20])
    assert all_close(optimizer.recorded[5], expected)


def test_grad_scaler_path_matches_full_batch(data, make_model, recording_sgd):
    x, y = data
    model = make_model()
    expected, _ = full_batch_grads(model, x[16:20], y[16:20])
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    optimizer, result = run(recording_sgd, model, micro_batches(x, y), n=4, lr=0.0, scaler=scaler)

    assert result.steps == 3
    assert all_close(optimizer.recorded[2], expected)


def test_max_grad_norm_clips_before_the_step(data, make_model, recording_sgd):
    x, y = data
    config = LoopConfig(epochs=1, accumulation_steps=4, max_grad_norm=1e-3)
    optimizer, _ = run(recording_sgd, make_model(), micro_batches(x, y), n=4, config=config)

    for grads in optimizer.recorded:
        norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
        assert norm <= 1e-3 * (1 + 1e-6)


def test_progress_reports_every_step_and_should_stop_stops(data, make_model):
    x, y = data
    reports: list[Progress] = []
    seen = 0

    def should_stop() -> bool:
        return seen >= 9

    def on_progress(progress: Progress) -> None:
        reports.append(progress)

    model = make_model()

    def model_step(batch):
        nonlocal seen
        seen += 1
        return F.cross_entropy(model(batch[0]), batch[1])

    config = LoopConfig(epochs=3, accumulation_steps=4)
    result = train(
        model_step,
        lambda epoch: micro_batches(x, y),
        torch.optim.SGD(model.parameters(), lr=0.1),
        config,
        on_progress=on_progress,
        should_stop=should_stop,
    )

    assert result.stopped
    assert (result.steps, result.micro_batches) == (2, 9)
    assert [p.step for p in reports] == [1, 2]
    assert [p.micro_batch for p in reports] == [4, 8]
    assert [p.images_seen for p in reports] == [8, 16]
    assert {p.effective_batch_size for p in reports} == {effective_batch_size(MICRO, 4)}
    assert result.final_loss == reports[-1].loss


def test_full_run_reports_increasing_steps_across_epochs(data, make_model):
    x, y = data
    reports: list[Progress] = []
    model = make_model()
    result = train(
        lambda batch: F.cross_entropy(model(batch[0]), batch[1]),
        lambda epoch: micro_batches(x, y),
        torch.optim.SGD(model.parameters(), lr=0.1),
        LoopConfig(epochs=2, accumulation_steps=3),
        on_progress=reports.append,
    )

    assert not result.stopped
    assert [p.step for p in reports] == list(range(1, 9))
    assert [p.epoch for p in reports] == [0] * 4 + [1] * 4
    assert reports[-1].images_seen == 40
    # 10 micro-batches an epoch in groups of 3: the last step of each averages just one.
    assert [p.effective_batch_size for p in reports] == [3 * MICRO] * 3 + [MICRO] + [
        3 * MICRO
    ] * 3 + [MICRO]


def test_cpu_amp_uses_bf16_autocast(data, caplog, make_model):
    x, y = data
    model = make_model().float()
    seen = []

    def model_step(batch):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return F.cross_entropy(model(batch[0].float()), batch[1])

    config = LoopConfig(epochs=1, accumulation_steps=2, amp=True, amp_dtype="fp16")
    with caplog.at_level(logging.WARNING, logger="app.training.loop"):
        train(
            model_step, lambda e: micro_batches(x, y), torch.optim.SGD(model.parameters()), config
        )

    assert set(seen) == {(True, torch.bfloat16)}
    assert "bf16" in caplog.text
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_config_and_helper_validation():
    assert effective_batch_size(32, 4) == 128
    with pytest.raises(ValueError):
        effective_batch_size(0, 4)
    with pytest.raises(ValueError):
        LoopConfig(accumulation_steps=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_amp_creates_a_grad_scaler_and_matches_full_batch(
    data, make_model, recording_sgd
):
    x, y = (t.cuda() for t in data)
    model = make_model().float().cuda()
    reference = copy.deepcopy(model)
    F.cross_entropy(reference(x[16:20]), y[16:20]).backward()
    expected = [p.grad for p in reference.parameters()]
    config = LoopConfig(epochs=1, accumulation_steps=4, amp=True, amp_dtype="fp16")
    optimizer = recording_sgd(model.parameters(), lr=0.0)
    result = train(
        lambda batch: F.cross_entropy(model(batch[0]), batch[1]),
        lambda epoch: micro_batches(x, y),
        optimizer,
        config,
        device_type="cuda",
    )

    assert result.steps == 3
    for got, want in zip(optimizer.recorded[2], expected, strict=True):
        assert torch.allclose(got, want, rtol=2e-2, atol=1e-3)


def test_a_non_finite_loss_stops_before_it_reaches_the_weights(data, make_model, recording_sgd):
    x, y = data[0][:8].clone(), data[1][:8]
    x[5, 0] = float("nan")  # in the second accumulation group (micro-batches 3 and 4)
    model = make_model()
    after_first_step: list[torch.Tensor] = []

    def remember(progress: Progress) -> None:
        after_first_step[:] = [p.detach().clone() for p in model.parameters()]

    with pytest.raises(NonFiniteLoss, match="optimizer step 2"):
        run(recording_sgd, model, micro_batches(x, y), n=2, on_progress=remember)
    assert after_first_step and all(torch.isfinite(p).all() for p in model.parameters())
    assert all_close(list(model.parameters()), after_first_step)

"""Losses and optimisers against torch: values, gradients, and several steps of
SGD and Adam on the same gradients; clip_grad_norm against clip_grad_norm_."""

import math

import numpy as np
import pytest

from fastrnn import losses, optim

from conftest import DTYPES, assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = {"float64": 1e-12, "float32": 1e-5}


def _torch_loss_and_grad(fn, prediction, *args, **kwargs):
    leaf = torch.from_numpy(prediction).requires_grad_()
    value = fn(leaf, *args, **kwargs)
    value.backward()
    return float(value.detach()), leaf.grad.numpy()


# ------------------------------------------------------------------- losses
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 5), (4, 7, 5), (64, 30, 97)],
                         ids=["rows", "steps", "threaded"])
def test_cross_entropy_matches_torch(rng, dtype, shape):
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, shape[-1], shape[:-1])
    loss, grad = losses.cross_entropy(logits, labels)
    expected, expected_grad = _torch_loss_and_grad(
        lambda z: F.cross_entropy(z.reshape(-1, shape[-1]), torch.from_numpy(labels).reshape(-1)),
        logits)
    assert math.isclose(loss, expected, rel_tol=TOL[dtype])
    assert_close(grad, expected_grad, dtype)


def test_cross_entropy_mask_matches_torch_ignore_index(rng):
    logits = rng.standard_normal((3, 6, 4))
    labels = rng.integers(0, 4, (3, 6))
    mask = rng.random((3, 6)) < 0.6
    loss, grad = losses.cross_entropy(logits, np.where(mask, labels, -7), mask=mask)
    ignored = torch.from_numpy(np.where(mask, labels, -100)).reshape(-1)
    expected, expected_grad = _torch_loss_and_grad(
        lambda z: F.cross_entropy(z.reshape(-1, 4), ignored, ignore_index=-100), logits)
    assert math.isclose(loss, expected, rel_tol=1e-12)
    assert_close(grad, expected_grad, "float64")


def test_cross_entropy_any_layout_and_many_masked_rows(rng):
    logits = rng.standard_normal((40, 50, 97)).astype(np.float32)
    labels = rng.integers(0, 97, (40, 50))
    mask = rng.random((40, 50)) < 0.3
    strided = np.asfortranarray(logits)[:, ::-1][:, ::-1]
    loss, grad = losses.cross_entropy(strided, labels, mask=mask)
    ignored = torch.from_numpy(np.where(mask, labels, -100)).reshape(-1)
    expected, expected_grad = _torch_loss_and_grad(
        lambda z: F.cross_entropy(z.reshape(-1, 97), ignored, ignore_index=-100), logits)
    assert math.isclose(loss, expected, rel_tol=1e-5)
    assert_close(grad, expected_grad, "float32")
    assert not np.any(grad[~mask])


def test_cross_entropy_nan_stays_in_its_row():
    logits = np.zeros((3, 4), np.float32)
    logits[1, 2] = np.nan
    loss, grad = losses.cross_entropy(logits, np.array([0, 1, 2]))
    assert math.isnan(loss)
    assert np.all(np.isnan(grad[1])) and np.all(np.isfinite(grad[[0, 2]]))
    empty_loss, empty_grad = losses.cross_entropy(np.zeros((0, 4)), np.zeros(0, int))
    assert math.isnan(empty_loss) and empty_grad.shape == (0, 4)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 3e4]], np.float32)
    loss, grad = losses.cross_entropy(logits, np.array([0, 1]))
    assert math.isclose(loss, (0 + 2e4) / 2, rel_tol=1e-6)
    np.testing.assert_allclose(grad, [[0, 0, 0], [0, -0.5, 0.5]], atol=1e-7)
    assert np.all(np.isfinite(grad))


def test_cross_entropy_errors():
    with pytest.raises(ValueError, match="0..2"):
        losses.cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="expected shape"):
        losses.cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="integer"):
        losses.cross_entropy(np.zeros((2, 3)), np.array([0.5, 1.0]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_matches_torch(rng, dtype):
    pred = rng.standard_normal((5, 4, 3)).astype(dtype)
    target = rng.standard_normal((5, 4, 3)).astype(dtype)
    loss, grad = losses.mse(pred, target)
    expected, expected_grad = _torch_loss_and_grad(F.mse_loss, pred, torch.from_numpy(target))
    assert math.isclose(loss, expected, rel_tol=TOL[dtype])
    assert_close(grad, expected_grad, dtype)


def test_mse_mask_drops_nan_targets_at_dropped_steps(rng):
    """The mask selects (as ``pred[mask]`` would); multiplying by it kept NaN * 0."""
    pred = rng.standard_normal((2, 4, 1))
    target = rng.standard_normal((2, 4, 1))
    mask = np.array([[True, True, False, False], [True, True, True, True]])
    poisoned = np.where(mask[..., None], target, np.nan)
    loss, grad = losses.mse(pred, poisoned, mask=mask)
    assert loss == pytest.approx(np.mean((pred[mask] - target[mask]) ** 2), rel=1e-12)
    assert np.all(np.isfinite(grad)) and not np.any(grad[~mask])


def test_mse_targets_without_the_unit_axis_and_masks(rng):
    pred = rng.standard_normal((6, 1))
    target = rng.standard_normal(6)
    assert losses.mse(pred, target)[0] == pytest.approx(np.mean((pred[:, 0] - target) ** 2))
    with pytest.raises(ValueError, match="expected shape"):
        losses.mse(rng.standard_normal((6, 2)), target)
    steps = rng.standard_normal((2, 4, 3))
    goal = rng.standard_normal((2, 4, 3))
    mask = np.array([[True, True, False, False], [True, True, True, True]])
    loss, grad = losses.mse(steps, goal, mask=mask)
    assert loss == pytest.approx(np.mean((steps[mask] - goal[mask]) ** 2), rel=1e-13)
    assert not np.any(grad[0, 2:])


# --------------------------------------------------------------- optimisers
def _params_and_grads(rng, dtype, steps):
    # "3.weight" spans several chunks of the fused update (and the threaded path);
    # "4.weight" is Fortran-ordered, as a user's array may be.
    shapes = {"0.weight": (4, 3), "0.bias": (4,), "2.weight_ih_l0": (8, 2),
              "3.weight": (260, 300), "4.weight": (5, 7)}
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    params["4.weight"] = np.asfortranarray(params["4.weight"])
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
             for _ in range(steps)]
    grads[1].pop("0.bias")                 # a step where one parameter has no gradient
    return params, grads


def _run_both(rng, dtype, make_ours, make_torch, steps=5):
    params, grads = _params_and_grads(rng, dtype, steps)
    tensors = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in params.items()}
    ours = make_ours(params)
    theirs = make_torch(list(tensors.values()))
    arrays = dict(params)
    for step_grads in grads:
        ours.step(step_grads)
        for name, tensor in tensors.items():
            tensor.grad = None if name not in step_grads else torch.from_numpy(
                step_grads[name].copy())
        theirs.step()
    for name, tensor in tensors.items():
        assert params[name] is arrays[name]                     # updated in place
        assert_close(params[name], tensor.detach().numpy(), dtype, name, tol=
                     1e-10 if dtype == "float64" else 1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", [
    dict(),
    dict(momentum=0.9),
    dict(momentum=0.9, nesterov=True, weight_decay=0.01),
    dict(momentum=0.5, dampening=0.3, weight_decay=0.1),
], ids=["plain", "momentum", "nesterov_wd", "dampening_wd"])
def test_sgd_steps_match_torch(rng, dtype, options):
    _run_both(rng, dtype, lambda p: optim.SGD(p, lr=0.1, **options),
              lambda t: torch.optim.SGD(t, lr=0.1, **options))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", [
    dict(),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
    dict(lr=0.1, betas=(0.3, 0.9)),
    dict(lr=0.1, betas=(0.0, 0.0)),
], ids=["defaults", "all_options", "small_beta1", "zero_betas"])
def test_adam_steps_match_torch(rng, dtype, options):
    _run_both(rng, dtype, lambda p: optim.Adam(p, **options),
              lambda t: torch.optim.Adam(t, **options))


def test_adam_first_moment_is_torchs_lerp():
    """torch's lerp gives exactly g at weight 1 (beta1 = 0) and takes 1 - beta1 in
    double; m += (1 - b1)(g - m) in float32 lost a small g beside a large old m."""
    ours = {"w": np.zeros(1, np.float32)}
    tensor = torch.zeros(1, requires_grad=True)
    opt, theirs = optim.Adam(ours, lr=0.1, betas=(0.0, 0.0)), \
        torch.optim.Adam([tensor], lr=0.1, betas=(0.0, 0.0))
    for g in (1.0, 3e-8):
        opt.step({"w": np.array([g], np.float32)})
        tensor.grad = torch.tensor([g], dtype=torch.float32)
        theirs.step()
    np.testing.assert_array_equal(opt.state["w"]["m"], theirs.state[tensor]["exp_avg"].numpy())
    np.testing.assert_array_equal(ours["w"], tensor.detach().numpy())


def test_optimiser_errors(rng):
    params = {"w": np.zeros(3)}
    opt = optim.Adam(params)
    with pytest.raises(KeyError, match="'v'"):
        opt.step({"v": np.zeros(3)})
    with pytest.raises(ValueError, match="expected shape"):
        opt.step({"w": np.zeros(4)})
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(params, lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(params, betas=(0.9, 1.0))
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.SGD({"w": frozen}, lr=0.1)


# ------------------------------------------------------------- clipping
@pytest.mark.parametrize("norm_type", [2.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["clipped", "unclipped"])
def test_clip_grad_norm_matches_torch(rng, max_norm, norm_type):
    grads = {"a": rng.standard_normal((4, 3)), "b": rng.standard_normal(5)}
    tensors = [torch.from_numpy(g.copy()).requires_grad_() for g in grads.values()]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.from_numpy(g.copy())
    expected = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type=norm_type))
    total = optim.clip_grad_norm(grads, max_norm, norm_type=norm_type)
    assert math.isclose(total, expected, rel_tol=1e-12)
    for t, g in zip(tensors, grads.values()):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)
    if max_norm < total:
        clipped = optim.clip_grad_norm(grads, math.inf, norm_type=norm_type)
        assert clipped == pytest.approx(max_norm, rel=1e-5)


def test_clip_grad_norm_refuses_what_it_cannot_scale_in_place():
    with pytest.raises(TypeError, match="floating-point ndarray, got a int64 array"):
        optim.clip_grad_norm({"w": np.array([3, 4])}, 1.0)
    with pytest.raises(TypeError, match="got list"):
        optim.clip_grad_norm({"w": [3.0, 4.0]}, 1.0)
    with pytest.raises(TypeError, match="map names"):
        optim.clip_grad_norm([np.ones(2)], 1.0)


def test_clip_grad_norm_of_a_nan_gradient_makes_every_gradient_nan_as_torch():
    grads = {"a": np.array([np.nan, 1.0]), "b": np.ones(3)}
    tensors = [torch.from_numpy(g.copy()).requires_grad_() for g in grads.values()]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_norm_(tensors, 1.0)
    assert math.isnan(optim.clip_grad_norm(grads, 1.0))
    for t, g in zip(tensors, grads.values()):
        np.testing.assert_array_equal(g, t.grad.numpy())
        assert np.isnan(g).all()


def test_adam_updates_float16_parameters_through_float64(rng):
    value = rng.standard_normal((3, 4))
    grad = rng.standard_normal((3, 4))
    half = {"w": value.astype(np.float16)}
    full = {"w": value.astype(np.float16).astype(np.float64)}
    optim.Adam(half, lr=0.1).step({"w": grad.astype(np.float16)})
    optim.Adam(full, lr=0.1).step({"w": grad.astype(np.float16).astype(np.float64)})
    assert half["w"].dtype == np.float16
    np.testing.assert_array_equal(half["w"], full["w"].astype(np.float16))

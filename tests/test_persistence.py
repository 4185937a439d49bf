"""Layers travel: pickling (also to another process), save/load through a plain .npz,
and equality (same class, configuration and parameter values)."""

import copy
import json
import multiprocessing
import pickle

import numpy as np
import pytest

import fastrnn

from conftest import CELLS, DTYPES, assert_close, assert_same_structure_equal


def random_config(seed):
    """A layer with random cell, options and weights (every option reachable)."""
    r = np.random.default_rng(seed)
    cell = CELLS[r.integers(len(CELLS))]
    bidirectional = bool(r.integers(2))
    kw = dict(num_layers=int(r.integers(1, 4)), bias=bool(r.integers(2)),
              batch_first=bool(r.integers(2)), bidirectional=bidirectional,
              dropout=float(r.choice([0.0, 0.25, 0.5])), dtype=DTYPES[r.integers(2)],
              backend=("auto", "reference")[r.integers(2)], seed=int(seed))
    if not bidirectional and r.integers(4) == 0:
        kw["reverse"] = True
    return cell.make(int(r.integers(1, 8)), int(r.integers(2, 12)), **kw)


SEEDS = range(24)
COVERAGE_LAYERS = [  # every option at least once, whatever the random draw
    fastrnn.LSTM(5, 8, num_layers=2, proj_size=3, bidirectional=True, dropout=0.3,
                 batch_first=True, dtype="float64", seed=1),
    fastrnn.GRU(4, 6, num_layers=3, bias=False, reset_after=False, dtype="float32", seed=2),
    fastrnn.RNN(3, 5, num_layers=2, nonlinearity="sigmoid", bidirectional=True,
                backend="reference", dtype="float64", seed=3),
    fastrnn.RNN(3, 5, nonlinearity="relu", reverse=True, seed=4),
    fastrnn.LSTM(2, 4, bias=False, dropout=1.0, num_layers=2, seed=None),
]


def all_layers():
    return [pytest.param(random_config(s), id=f"random{s}") for s in SEEDS] + \
        [pytest.param(layer, id=f"cover{i}") for i, layer in enumerate(COVERAGE_LAYERS)]


def layer_input(layer, rng, T=5, B=3):
    shape = (B, T, layer.input_size) if layer.batch_first else (T, B, layer.input_size)
    return rng.standard_normal(shape).astype(layer.dtype)


def public_config(layer):
    """The constructor arguments as attributes (not the private _config())."""
    cfg = dict(cls=type(layer), input_size=layer.input_size, hidden_size=layer.hidden_size,
               num_layers=layer.num_layers, bias=layer.bias, batch_first=layer.batch_first,
               dropout=layer.dropout, bidirectional=layer.bidirectional, dtype=layer.dtype,
               backend=layer.backend, reverse=layer.reverse)
    cfg[dict(rnn="nonlinearity", lstm="proj_size", gru="reset_after")[layer.mode]] = getattr(
        layer, dict(rnn="nonlinearity", lstm="proj_size", gru="reset_after")[layer.mode])
    return cfg


# -------------------------------------------------------------------- pickling

@pytest.mark.parametrize("layer", all_layers())
def test_pickle_round_trip_gives_an_equal_layer(layer, rng):
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        clone = pickle.loads(pickle.dumps(layer, protocol=protocol))
        assert clone is not layer
        assert clone == layer and not (clone != layer)
        assert public_config(clone) == public_config(layer)
        assert_same_structure_equal(clone.state_dict(), layer.state_dict())
    x = layer_input(layer, rng)
    assert_same_structure_equal(clone(x), layer(x))


@pytest.mark.parametrize("layer", all_layers())
def test_copies_own_their_parameters(layer):
    for clone in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer), copy.copy(layer)):
        assert clone == layer
        for name, p in clone.params.items():
            assert not np.shares_memory(p, layer.params[name]), name
        first = next(iter(clone.params))
        clone.params[first][...] += 1.0
        assert clone != layer


def test_parameters_start_on_cache_lines(tmp_path):
    """Every parameter starts on a 64-byte boundary (a stream's step loads the weights'
    rows a vector at a time), in a new layer and in every copy of one."""
    model = fastrnn.Sequential([fastrnn.Embedding(20, 5, dtype="float64", seed=1),
                                *COVERAGE_LAYERS[:1],
                                fastrnn.FinalState(), fastrnn.Dense(6, 3, dtype="float64", seed=2)])
    model.save(tmp_path / "model.npz")
    copies = [model, fastrnn.load(tmp_path / "model.npz"), pickle.loads(pickle.dumps(model)),
              copy.deepcopy(model)]
    for layer in [p.values[0] for p in all_layers()]:
        copies += [layer, pickle.loads(pickle.dumps(layer)), copy.copy(layer)]
    for item in copies:
        for name, p in item.params.items():
            assert p.ctypes.data % 64 == 0 and p.flags.c_contiguous, (type(item), name)


def test_pickle_keeps_the_dropout_generator(rng):
    layer = fastrnn.GRU(3, 6, num_layers=3, dropout=0.5, dtype="float64", seed=5)
    x = layer_input(layer, rng, T=6, B=4)
    layer.forward_train(x)                     # advance the generator first
    clone = pickle.loads(pickle.dumps(layer))
    y_a, _, _ = layer.forward_train(x)
    y_b, _, _ = clone.forward_train(x)
    np.testing.assert_array_equal(y_b, y_a)    # the same masks were drawn


def test_pickle_is_cheap(rng):
    layer = fastrnn.LSTM(64, 128, num_layers=2, bidirectional=True, proj_size=32,
                         dtype="float64", seed=6)
    raw = sum(p.nbytes for p in layer.params.values())
    assert raw > 1_000_000
    data = pickle.dumps(layer)
    assert len(data) <= 1.01 * raw + 4096, (len(data), raw)
    # Weights as arrays and a configuration; no compiled state travels.
    for name in (b"fastrnn._stream", b"fastrnn.kernels", b"StreamCore", b"fastrnn._backends"):
        assert name not in data
    small = pickle.dumps(fastrnn.GRU(2, 3, seed=0))
    assert len(small) < 4096


# ------------------------------------------------------------- other processes

def _child_forward(payload):
    """Runs in a spawned process: unpickle the layer, call it, send things back."""
    layer, x, stream, rows = payload
    import fastrnn as child_fastrnn
    y, state = layer(x)
    stepped = [stream.step(r) for r in rows]
    return child_fastrnn.__file__, layer, y, state, stepped, stream.state, stream


def test_layers_and_streams_travel_through_spawned_processes(rng):
    layers = [random_config(s) for s in range(6)] + COVERAGE_LAYERS
    uni = fastrnn.LSTM(3, 6, num_layers=2, proj_size=2, dtype="float64", seed=7)
    payloads = []
    for layer in layers:
        stream = uni.stream(2)
        stream.step(rng.standard_normal((2, 3)))      # a stream with a non-zero state
        rows = rng.standard_normal((3, 2, 3))
        payloads.append((layer, layer_input(layer, rng), stream, rows))
    expected_streams = [copy.deepcopy(p[2]) for p in payloads]

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_child_forward, payloads)

    for (layer, x, _, rows), expected_stream, result in zip(payloads, expected_streams,
                                                              results):
        child_file, back, y, state, stepped, stream_state, stream_back = result
        assert child_file == fastrnn.__file__, "the child imported another fastrnn"
        assert back == layer
        y_ref, state_ref = layer(x)
        assert_close(y, y_ref, layer.dtype, f"y {layer!r}")
        assert_close(state, state_ref, layer.dtype, f"state {layer!r}")
        stepped_ref = [expected_stream.step(r) for r in rows]
        assert_close(np.stack(stepped), np.stack(stepped_ref), "float64", "stream y")
        assert_close(stream_state, expected_stream.state, "float64", "stream state")
        assert_close(stream_back.state, expected_stream.state, "float64", "stream back")


# ------------------------------------------------------------------- save/load

@pytest.mark.parametrize("layer", all_layers())
def test_save_load_round_trip(layer, tmp_path, rng):
    path = tmp_path / "layer.npz"
    layer.save(path)
    loaded = fastrnn.load(path)
    assert type(loaded) is type(layer)
    assert loaded == layer
    assert public_config(loaded) == public_config(layer)
    x = layer_input(layer, rng)
    assert_same_structure_equal(loaded(x), layer(x))
    # str paths work too.
    layer.save(str(tmp_path / "again.npz"))
    assert fastrnn.load(str(tmp_path / "again.npz")) == layer


def _find_config(obj, layer):
    """The dict in the JSON header holding the constructor arguments."""
    if isinstance(obj, dict):
        if obj.get("input_size") == layer.input_size and \
                obj.get("hidden_size") == layer.hidden_size:
            return obj
        for v in obj.values():
            found = _find_config(v, layer)
            if found is not None:
                return found
    return None


def _json_strings(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _json_strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _json_strings(v)
    elif isinstance(obj, str):
        yield obj


@pytest.mark.parametrize("layer", all_layers())
def test_npz_is_plain_and_readable_without_fastrnn(layer, tmp_path):
    path = tmp_path / "layer.npz"
    layer.save(path)
    with np.load(path, allow_pickle=False) as data:         # no pickled objects inside
        names = list(data.files)
        arrays = {k: data[k] for k in names if k != "__config__"}
        header = json.loads(str(data["__config__"]))
    assert "__config__" in names
    sd = layer.state_dict()
    assert sorted(arrays) == sorted(sd)                     # torch's names, nothing else
    for name, value in sd.items():
        assert arrays[name].dtype == value.dtype
        np.testing.assert_array_equal(arrays[name], value)
    assert type(layer).__name__ in set(_json_strings(header))
    config = _find_config(header, layer)
    assert config is not None, header
    assert config["num_layers"] == layer.num_layers
    assert config["bidirectional"] == layer.bidirectional
    assert config["batch_first"] == layer.batch_first
    assert config["bias"] == layer.bias
    assert np.dtype(config["dtype"]) == layer.dtype


@pytest.mark.parametrize("cell", [c for c in CELLS if c.torch_name], ids=str)
def test_npz_rebuilds_the_torch_module(cell, tmp_path, rng):
    torch = pytest.importorskip("torch")
    layer = cell.make(4, 6, num_layers=2, bidirectional=True, batch_first=True,
                      dtype="float64", seed=8)
    layer.save(tmp_path / "layer.npz")
    with np.load(tmp_path / "layer.npz", allow_pickle=False) as data:
        header = json.loads(str(data["__config__"]))
        arrays = {k: torch.from_numpy(data[k]) for k in data.files if k != "__config__"}
    cfg = _find_config(header, layer)
    kw = {k: cfg[k] for k in ("input_size", "hidden_size", "num_layers", "bias",
                              "batch_first", "bidirectional")}
    if "nonlinearity" in cfg:
        kw["nonlinearity"] = cfg["nonlinearity"]
    if cfg.get("proj_size"):
        kw["proj_size"] = cfg["proj_size"]
    module = getattr(torch.nn, cell.torch_name)(**kw).double()
    module.load_state_dict(arrays, strict=True)
    x = layer_input(layer, rng)
    with torch.no_grad():
        y_t, _ = module(torch.from_numpy(x))
    assert_close(layer(x)[0], y_t.numpy(), "float64", "y")


def test_save_then_load_with_the_same_path_without_suffix(tmp_path):
    layer = fastrnn.GRU(3, 4, seed=9)
    for name in ("layer", "layer.bin", "weights.fastrnn"):
        path = tmp_path / name
        layer.save(path)
        assert fastrnn.load(path) == layer, name


def test_load_of_a_plain_npz_raises_value_error(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, weight_ih_l0=np.zeros((4, 3)), weight_hh_l0=np.zeros((4, 4)))
    with pytest.raises(ValueError):
        fastrnn.load(path)
    empty = tmp_path / "empty.npz"
    np.savez(empty)
    with pytest.raises(ValueError):
        fastrnn.load(empty)


def test_load_refuses_pickled_objects(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.npz"
    arr = np.empty((), object)
    arr[()] = Evil()
    np.savez(path, __config__=arr)
    with pytest.raises(ValueError):
        fastrnn.load(path)
    assert not marker.exists()


def test_load_of_a_damaged_file_raises(tmp_path):
    layer = fastrnn.LSTM(3, 4, num_layers=2, seed=10)
    layer.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz", allow_pickle=False) as data:
        entries = {k: data[k] for k in data.files}
    missing = dict(entries)
    del missing["weight_hh_l1"]
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises((KeyError, ValueError), match="weight_hh_l1"):
        fastrnn.load(tmp_path / "missing.npz")
    wrong = dict(entries, weight_ih_l0=np.zeros((16, 5), np.float32))
    np.savez(tmp_path / "wrong.npz", **wrong)
    with pytest.raises(ValueError, match="weight_ih_l0"):
        fastrnn.load(tmp_path / "wrong.npz")
    not_json = dict(entries, __config__=np.array("{not json"))
    np.savez(tmp_path / "notjson.npz", **not_json)
    with pytest.raises(ValueError):
        fastrnn.load(tmp_path / "notjson.npz")


def _edited_header(path, out, edit):
    """Copy the file at ``path`` to ``out`` with its JSON header passed through ``edit``."""
    with np.load(path, allow_pickle=False) as data:
        entries = {k: data[k] for k in data.files}
    header = json.loads(str(entries["__config__"]))
    edit(header)
    entries["__config__"] = np.array(json.dumps(header))
    np.savez(out, **entries)
    return out


@pytest.mark.parametrize("edit, match", [
    (lambda h: h["config"].pop("batch_first"), "batch_first"),
    (lambda h: h["config"].pop("nonlinearity"), "nonlinearity"),
    (lambda h: h["config"].update(hidden_size=5), "weight|hidden_size"),
    (lambda h: h["config"].update(colour="red"), "colour"),
    (lambda h: h.pop("cls"), "unknown class"),
    (lambda h: h.update(config=[1, 2]), "JSON object"),
], ids=["lost_default_key", "lost_cell_key", "edited_size", "unknown_key", "no_class",
        "config_not_object"])
def test_load_of_an_edited_header_raises_value_error(edit, match, tmp_path):
    """A key lost from a file must not fall back on the constructor's default (a
    relu RNN reloaded as tanh, batch-first as time-major): the configuration must be
    exactly what such a layer writes."""
    layer = fastrnn.RNN(3, 4, nonlinearity="relu", batch_first=True, seed=1)
    layer.save(tmp_path / "good.npz")
    with pytest.raises(ValueError, match=match):
        fastrnn.load(_edited_header(tmp_path / "good.npz", tmp_path / "bad.npz", edit))


@pytest.mark.parametrize("edit, match", [
    (lambda h: h["config"]["items"][1]["config"].pop("activation"), "activation"),
    (lambda h: h["config"].pop("masked_output"), "masked_output"),
    (lambda h: h["config"]["items"][0].pop("config"), "JSON object"),
    (lambda h: h["config"].update(items="abc"), "items"),
], ids=["lost_activation", "lost_masked_output", "item_without_config", "items_not_list"])
def test_load_of_an_edited_sequential_header_raises_value_error(edit, match, tmp_path):
    model = fastrnn.Sequential([fastrnn.LSTM(3, 4, batch_first=True, seed=1),
                                fastrnn.Dense(4, 2, activation="tanh", seed=2)])
    model.save(tmp_path / "good.npz")
    with pytest.raises(ValueError, match=match):
        fastrnn.load(_edited_header(tmp_path / "good.npz", tmp_path / "bad.npz", edit))


def test_load_of_other_files_raises_value_error(tmp_path):
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(ValueError, match="npy"):
        fastrnn.load(tmp_path / "array.npy")
    fastrnn.GRU(2, 3, seed=0).save(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="not a readable fastrnn file"):
        fastrnn.load(tmp_path / "cut.npz")
    with pytest.raises(FileNotFoundError):
        fastrnn.load(tmp_path / "absent.npz")


# -------------------------------------------------------------------- equality

def test_equality_semantics():
    a = fastrnn.LSTM(3, 5, num_layers=2, dtype="float64", seed=11)
    b = fastrnn.LSTM(3, 5, num_layers=2, dtype="float64", seed=11)
    assert a == a and a == b and not (a != b)
    assert a != fastrnn.LSTM(3, 5, num_layers=2, dtype="float64", seed=12)

    # One parameter differing by one ulp is enough.
    b.params["bias_hh_l1"][2] = np.nextafter(b.params["bias_hh_l1"][2], np.inf)
    assert a != b and not (a == b)
    b.load_state_dict(a.state_dict())
    assert a == b

    # Same weights, different configuration.
    c = fastrnn.LSTM(3, 5, num_layers=2, dtype="float64", batch_first=True, seed=11)
    c.load_state_dict(a.state_dict())
    assert c.state_dict().keys() == a.state_dict().keys()
    assert a != c
    d = fastrnn.LSTM(3, 5, num_layers=2, dtype="float32", seed=11)
    d.load_state_dict(a.state_dict())
    assert a != d

    # Same class and parameter shapes, a different cell option.
    r1 = fastrnn.RNN(3, 4, nonlinearity="tanh", seed=0)
    r2 = fastrnn.RNN(3, 4, nonlinearity="relu", seed=0)
    assert r1 != r2
    g = fastrnn.GRU(3, 4, seed=0)
    g2 = fastrnn.GRU(3, 4, reset_after=False, seed=0)
    assert g != g2

    # Not equal to other things, and never raises.
    assert a != "LSTM" and a != None and a != a.state_dict()  # noqa: E711



def test_sequential_model_saves_and_loads(tmp_path):
    """fastrnn.load returns the model too: every item's configuration and weights."""
    model = fastrnn.Sequential([
        fastrnn.Embedding(20, 8, mask_zero=True, seed=1),
        fastrnn.GRU(8, 16, batch_first=True, bidirectional=True, reset_after=False, seed=2),
        fastrnn.FinalState(), fastrnn.Dropout(0.2),
        fastrnn.Dense(32, 3, activation="softmax", seed=3)])
    tokens = np.random.default_rng(0).integers(0, 20, (4, 7))
    tokens[0, :3] = 0
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fastrnn.load(path)
    assert type(loaded) is fastrnn.Sequential
    np.testing.assert_array_equal(loaded(tokens), model(tokens))
    assert loaded.state_dict().keys() == model.state_dict().keys()
    with np.load(path, allow_pickle=False) as data:
        assert "1.weight_ih_l0_reverse" in data.files

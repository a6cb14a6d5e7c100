"""Bad input through the real `tdb`: crafted pickles, a broken tdb.toml, invalid budgets, a corrupt store, and
the bad input that was already refused cleanly (kept here so it stays refused). Each trial asserts the exit
code, one `Error:` line naming the problem, no traceback, and that the store did not change."""

from __future__ import annotations

import hashlib
import pickle
import struct
from pathlib import Path

import duckdb
import numpy as np
import pytest

from taskonomy_db.ingest import ingest
from taskonomy_db.published import import_published
from taskonomy_db.workspace import Workspace
from tests.conftest import make_dataset
from tests.faults.conftest import assert_one_line_error, store_fingerprint, tdb

try:  # numpy >= 2 moved the module
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

# A release as small as the real one is shaped: released code names, numpy float64 values.
SCORES = {
    "rgb2depth__rgb2sfnorm": 0.6,
    "self__rgb2sfnorm": 0.3,
    "pixels__rgb2sfnorm": 0.1,
    "rgb2sfnorm__rgb2depth": 0.5,
    "self__rgb2depth": 0.4,
    "pixels__rgb2depth": 0.1,
}
FILES = {
    "affinities": "all_affinities_16k.pkl",
    "winrates": ("wins_vs_task_16k.pkl", "wins_vs_pixels_16k.pkl"),
}


def write_release(root: Path, affinities: bytes | None = None) -> Path:
    """ROOT/results laid out as the release's 16k files; `affinities` replaces the affinity pickle's bytes."""
    good = pickle.dumps({key: np.float64(value) for key, value in SCORES.items()}, protocol=3)
    (root / "results" / "affinities").mkdir(parents=True)
    (root / "results" / "winrates").mkdir()
    (root / "results" / "affinities" / FILES["affinities"]).write_bytes(affinities or good)
    for name in FILES["winrates"]:
        (root / "results" / "winrates" / name).write_bytes(good)
    return root


@pytest.fixture
def published(tmp_path: Path) -> Workspace:
    """A workspace holding an import of a small well-formed release."""
    workspace = Workspace.init(tmp_path / "ws")
    import_published(workspace.db, write_release(tmp_path / "good"), "16k")
    return workspace


# -- 1. crafted pickles ------------------------------------------------------------------------------------


class Reduce:
    """Pickles as exactly the call it is given: (callable, args[, state]) -> GLOBAL, args, REDUCE[, BUILD]."""

    def __init__(self, *reduction: object) -> None:
        self.reduction = reduction

    def __reduce__(self) -> tuple:
        return self.reduction


def crafted(value: object) -> bytes:
    return pickle.dumps({"rgb2depth__rgb2sfnorm": value}, protocol=3)


def by_hand_dtype_made_object_by_build() -> bytes:
    """numpy.ndarray((1,), D, b'AAAAAAAA') where D is dtype('f8') (passes a dtype check) that BUILD then gives the
    has-object flag, written opcode by opcode."""

    def text(value: str) -> bytes:  # BINUNICODE
        return b"X" + struct.pack("<I", len(value)) + value.encode()

    minus_one = b"J" + struct.pack("<i", -1)  # BININT
    return b"".join(
        [
            b"\x80\x03}",  # PROTO 3, EMPTY_DICT
            text("rgb2depth__rgb2sfnorm"),
            b"cnumpy\nndarray\n(K\x01\x85",  # GLOBAL numpy.ndarray, MARK, (1,)
            b"cnumpy\ndtype\n" + text("f8") + b"\x89\x88\x87R",  # dtype('f8', False, True): TUPLE3 REDUCE
            b"(K\x03" + text("<") + b"NNN" + minus_one + minus_one + b"K\x01tb",  # BUILD (3,'<',,,,-1,-1,flags 1)
            b"C\x08AAAAAAAA",  # SHORT_BINBYTES: the 'pointer'
            b"tR",  # TUPLE from MARK, REDUCE: ndarray((1,), D, b'AAAAAAAA')
            b"s.",  # SETITEM, STOP
        ]
    )


def built_twice() -> bytes:
    """An array reconstructed and BUILT, then BUILT again with a state of its own (found in review: a second
    BUILD frees data that a view of the array may still point at)."""
    once = pickle.dumps(np.zeros(2), protocol=3)  # ..., BUILD, STOP
    state = pickle.dumps(np.zeros(2).__reduce__()[2], protocol=3)
    return once[:-1] + state[2:-1] + b"b."


f8_then_object = Reduce(np.dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 1))
CRAFTED = {
    "object array of raw bytes": (crafted(Reduce(np.ndarray, ((1,), "O", b"AAAAAAAA"))), "holds Python objects"),
    "object array reconstructed": (crafted(Reduce(_reconstruct, (np.ndarray, (1,), "O"))), "holds Python objects"),
    "object dtype in array state": (
        crafted(Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), np.dtype("O"), False, b"AAAAAAAA"))),
        "holds Python objects",
    ),
    "dtype changed by BUILD": (crafted(Reduce(np.ndarray, ((1,), f8_then_object, b"AAAAAAAA"))), "BUILD would change"),
    "dtype changed by BUILD, by hand": (by_hand_dtype_made_object_by_build(), "BUILD would change"),
    "huge array": (crafted(Reduce(np.ndarray, ((10**12,), "f8"))), "needs 8000000000000 bytes"),
    "huge array state": (
        crafted(Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (10**12,), np.dtype("f8"), False, b""))),
        "needs 8000000000000 bytes",
    ),
    "many arrays outgrowing the file": (
        crafted([Reduce(np.ndarray, ((1000,), "u1")) for _ in range(200)]),  # each fits; together they do not
        "bytes for earlier arrays and scalars",
    ),
    "another global": (crafted(Reduce(print, ("hello",))), "builtins.print is not allowed"),
    "array over another array's memory": (
        crafted([np.zeros(4), Reduce(np.ndarray, ((4,), "f8", np.zeros(4)))]),
        "over a ndarray buffer refused",
    ),
    "array built twice": (built_twice(), "or twice, refused"),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_a_crafted_pickle_is_one_line_and_leaves_the_store_and_a_failed_run(tmp_path, published, case):
    data, fragment = CRAFTED[case]
    release = write_release(tmp_path / "evil", data)
    before = store_fingerprint(published.db.path)

    result = tdb("import-published", release, "--data", "16k", "-w", published.root)

    evil = release / "results" / "affinities" / FILES["affinities"]
    assert_one_line_error(result, "refused to load", str(evil), fragment)
    assert_kept(published.db.path, before)
    with duckdb.connect(str(published.db.path), read_only=True) as con:
        runs = con.execute("select command, status from runs order by run_id desc").fetchall()
    assert len(runs) == before["counts"]["runs"] + 1 and runs[0] == ("import-published", "failed")


def test_the_release_shape_still_loads_through_the_checks(tmp_path, published):
    # The checks must not refuse what the release holds: numpy scalars (dtype + BUILD + scalar) and arrays.
    scores = {key: np.float64(value) for key, value in SCORES.items()}
    with_arrays = pickle.dumps([scores, np.arange(3.0), np.array(["rgb2depth"])], protocol=3)
    from taskonomy_db.published import load_pickle

    (tmp_path / "arrays.pkl").write_bytes(with_arrays)
    loaded = load_pickle(tmp_path / "arrays.pkl")
    assert loaded[0] == SCORES and loaded[1].tolist() == [0.0, 1.0, 2.0] and loaded[2].tolist() == ["rgb2depth"]
    result = tdb("import-published", write_release(tmp_path / "again"), "--data", "16k", "-w", published.root)
    assert result.returncode == 0, result.stderr


# -- 2. tdb.toml -------------------------------------------------------------------------------------------

TOML = '[study]\nname = "s"\nseed = 0\n\n[split]\ntrain = 0.7\nval = 0.15\ntest = 0.15\n'
BAD_TOML = {
    "a word for a fraction": (("train = 0.7", 'train = "a lot"'), ["[split] train must be a number", "'a lot'"]),
    "nan for a fraction": (("val = 0.15", "val = nan"), ["[split] val must be a finite number", "nan"]),
    "a float seed": (("seed = 0", "seed = 1.5"), ["[study] seed must be an integer", "1.5"]),
    "a number for a name": (('name = "s"', "name = 7"), ["[study] name must be a string", "7"]),
    "a bool for the demo profile": (("", "\n[demo]\nprofile = true\n"), ["[demo] profile must be a string", "True"]),
    "an unknown section": (("[split]", "[splits]"), ["unknown section [splits]", "[split]"]),
    "an unknown key": (("test = 0.15", "tset = 0.15"), ["unknown setting [split] tset", "train, val, test"]),
    "a section that is a value": (("", 'demo = "x"\n'), ["top-level key 'demo' must be a table"]),
    "unparsable": (("train = 0.7", "train = 0.7 0"), ["line 6"]),
}


@pytest.mark.parametrize("case", BAD_TOML)
def test_a_bad_tdb_toml_is_one_line_naming_the_file_section_key_and_value(published, case):
    (old, new), fragments = BAD_TOML[case]
    text = TOML.replace(old, new) if old else (new + TOML if new.startswith("demo") else TOML + new)
    settings = published.path("tdb.toml")
    settings.write_text(text)
    before = store_fingerprint(published.db.path)

    result = tdb("query", "select count(*) from published_transfers", "-w", published.root)

    assert_one_line_error(result, str(settings), *fragments)
    assert store_fingerprint(published.db.path) == before


def test_a_tdb_toml_that_is_not_text_is_one_line(published):
    published.path("tdb.toml").write_bytes(TOML.encode() + b"\xff\xfe\n")
    result = tdb("tables", "-w", published.root)
    assert_one_line_error(result, str(published.path("tdb.toml")), "not UTF-8")


# -- 3. budgets and costs ----------------------------------------------------------------------------------
# Policy: a value no taxonomy can take is a usage error, exit 2, however it is wrong (click's own parse
# failures, such as 'abc', exit 2), with or without --sweep; an infeasible budget exits 2 as well.

NOT_BUDGETS = ["-1", "nan", "inf", "-inf", "abc"]


@pytest.mark.parametrize("sweep", [[], ["--sweep"]], ids=["solve", "sweep"])
@pytest.mark.parametrize("value", NOT_BUDGETS)
def test_every_invalid_budget_is_the_same_usage_error(published, sweep, value):
    result = tdb("taxonomy", *sweep, f"--budget={value}", "-w", published.root)
    assert_one_line_error(result, "Invalid value for '--budget'", value.lstrip("-"), code=2)


@pytest.mark.parametrize("value", ["2.5", "0"])
def test_a_sweep_budget_that_is_not_a_whole_number_from_one_is_a_usage_error(published, value):
    result = tdb("taxonomy", "--sweep", "--budget", value, "-w", published.root)
    assert_one_line_error(result, "Invalid value for '--budget'", "whole number >= 1", f"got {value}", code=2)


@pytest.mark.parametrize("sweep", [[], ["--sweep"]], ids=["solve", "sweep"])
@pytest.mark.parametrize(
    ("option", "pair"),
    [
        *(("--cost", f"normal={value}") for value in ["-1", "nan", "inf", "abc"]),
        ("--cost", "normal"),
        ("--transfer-cost", "normal=nan"),
        ("--value", "normal=-inf"),
    ],
)
def test_every_invalid_cost_or_value_is_the_same_usage_error(published, sweep, option, pair):
    result = tdb("taxonomy", *sweep, option, pair, "-w", published.root)
    assert_one_line_error(result, f"Invalid value for '{option}'", pair.partition("=")[2] or pair, code=2)


# -- 4. a corrupt store ------------------------------------------------------------------------------------


def corrupt_block_of(store: Path, table: str) -> None:
    """Overwrite the start of the data in a block holding `table`: its checksum fails when a statement reads it
    (DuckDB checks the block's used bytes, so bytes past them would go unnoticed)."""
    with duckdb.connect(str(store), read_only=True) as con:
        block = con.execute(f"select min(block_id) from pragma_storage_info('{table}') where block_id >= 0").fetchone()[
            0
        ]
        block_size = con.execute("select block_size from pragma_database_size()").fetchone()[0]
    with open(store, "r+b") as file:
        file.seek(3 * 4096 + block * block_size + 8)  # after three 4 KiB headers, and the block's checksum
        file.write(b"\xde\xad\xbe\xef" * 16)


def corrupt_header(store: Path) -> None:
    with open(store, "r+b") as file:
        file.seek(4096)  # the first of the two database headers: every open reads it
        file.write(b"\xde\xad\xbe\xef" * 256)


def assert_kept(store: Path, before: dict) -> None:
    """The store is as `before`, but for at most one more run, which failed: a command that got as far as
    recording its run marks it failed, and nothing else."""
    after = store_fingerprint(store)
    added = after["counts"].pop("runs") - before["counts"]["runs"]
    assert after == {**before, "counts": {k: v for k, v in before["counts"].items() if k != "runs"}}
    assert added in (0, 1)
    if added:
        with duckdb.connect(str(store), read_only=True) as con:
            assert con.execute("select status from runs order by run_id desc limit 1").fetchone() == ("failed",)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


CORRUPT_MESSAGE = ("is corrupt or unreadable", "restore it from a copy")


@pytest.mark.parametrize(
    ("damage", "args"),
    [
        (corrupt_header, ["tables"]),
        (corrupt_header, ["origin"]),
        (corrupt_header, ["import-published", "{release}", "--data", "16k"]),
        (corrupt_block_of, ["query", "select sum(affinity) from published_transfers"]),
        (corrupt_block_of, ["affinity"]),
        (corrupt_block_of, ["taxonomy", "--budget", "1"]),
    ],
    ids=["header-tables", "header-origin", "header-import", "block-query", "block-affinity", "block-taxonomy"],
)
def test_a_corrupt_store_is_one_line_naming_it_and_a_way_out(tmp_path, published, damage, args):
    store = published.db.path
    if damage is corrupt_block_of:
        corrupt_block_of(store, "published_transfers")
    else:
        damage(store)
    before = digest(store)
    release = write_release(tmp_path / "again")

    result = tdb(*(arg.format(release=release) for arg in args), "-w", published.root)

    assert_one_line_error(result, f"the store {store}", *CORRUPT_MESSAGE)
    assert digest(store) == before


def test_a_write_that_meets_a_corrupt_block_fails_in_one_line_and_leaves_the_damage_visible(tmp_path, published):
    # The run is recorded before the import reads the damaged block, so the file changes; what must not happen
    # is a write that papers over the damage (the block rewritten from what could be read).
    store = published.db.path
    corrupt_block_of(store, "published_transfers")
    result = tdb("import-published", write_release(tmp_path / "again"), "--data", "16k", "-w", published.root)
    assert_one_line_error(result, f"the store {store}", *CORRUPT_MESSAGE)
    again = tdb("query", "select sum(affinity) from published_transfers", "-w", published.root)
    assert_one_line_error(again, f"the store {store}", *CORRUPT_MESSAGE)


# -- bad input that is already refused cleanly: kept from regressing ---------------------------------------


@pytest.fixture
def ingested(tmp_path: Path) -> tuple[Workspace, Path]:
    workspace = Workspace.init(tmp_path / "ws")
    root = make_dataset(tmp_path / "data", ["aa", "bb", "cc"])
    ingest(workspace, root)
    return workspace, root


def truncated_png(root: Path) -> Path:
    bad = root / "dd" / "rgb" / "point_0_view_1_domain_rgb.png"
    bad.write_bytes(bad.read_bytes()[:-30])
    return bad


def unparsable_name(root: Path) -> Path:
    bad = root / "dd" / "rgb" / "point_0_view_x_domain_rgb.png"
    bad.write_bytes(b"\x89PNG")
    return bad


@pytest.mark.parametrize(
    ("breakage", "message"), [(truncated_png, "truncated PNG"), (unparsable_name, "file name does not parse")]
)
def test_a_bad_file_in_a_dataset_is_one_line_and_ingests_nothing(ingested, breakage, message):
    workspace, root = ingested
    make_dataset(root, ["dd"])
    bad = breakage(root)
    before = store_fingerprint(workspace.db.path)
    result = tdb("ingest", root, "-w", workspace.root)
    assert_one_line_error(result, str(bad), message)
    assert_kept(workspace.db.path, before)


def test_a_split_file_naming_no_building_is_one_line(tmp_path, ingested):
    workspace, root = ingested
    split = tmp_path / "split.csv"
    split.write_text("id,train,val,test\nzz,1,0,0\n")
    before = store_fingerprint(workspace.db.path)
    result = tdb("ingest", root, "--split-file", split, "-w", workspace.root)
    assert_one_line_error(result, str(split), "names none of the 3 ingested buildings")
    assert_kept(workspace.db.path, before)


@pytest.mark.parametrize(
    ("args", "fragments", "code"),
    [
        (["taxonomy", "--targets", "nosuch"], ["unknown task(s) in --targets: nosuch"], 1),
        (["taxonomy", "--max-order", "0"], ["Invalid value for '--max-order'", "0"], 2),
        (["taxonomy", "--budget", "0", "--target-only", "normal"], ["infeasible", "budget 0"], 2),
        (["extract", "nosuch"], ["no registered encoder 'nosuch'"], 1),
        (["add-encoder", "Bad Name!", "{onnx}"], ["encoder name 'Bad Name!'"], 1),
        (["add-encoder", "mine", "{onnx}"], ["{onnx}", "is not a valid ONNX model"], 1),
    ],
    ids=["unknown-task", "max-order", "infeasible", "unknown-encoder", "encoder-name", "bad-onnx"],
)
def test_bad_names_and_values_stay_one_line(tmp_path, published, args, fragments, code):
    onnx = tmp_path / "garbage.onnx"
    onnx.write_bytes(b"not a model")
    before = store_fingerprint(published.db.path)
    result = tdb(*(arg.format(onnx=onnx) for arg in args), "-w", published.root)
    assert_one_line_error(result, *(fragment.format(onnx=onnx) for fragment in fragments), code=code)
    assert_kept(published.db.path, before)


def test_a_missing_workspace_is_one_line_for_a_command_that_writes(tmp_path):
    result = tdb("import-published", write_release(tmp_path / "rel"), "--data", "16k", "-w", tmp_path / "nowhere")
    assert_one_line_error(result, "no workspace at", str(tmp_path / "nowhere"))
    assert not (tmp_path / "nowhere").exists()

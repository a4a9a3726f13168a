"""Vocabulary remap and overlap copy (issue 11), checked against TF's own ``warm_starting_util_test.py``
scenarios: the expected values below are the ones TF's ``warm_start`` + ``VocabInfo`` gives."""

from __future__ import annotations

import re

import builders
import fsspec
import numpy as np
import pytest
from servers import upload_dir

import warmstart
from warmstart import PlanError

PREV_VOCAB = ["apple", "banana", "guava", "orange"]
NEW_VOCAB = ["orange", "guava", "banana", "apple", "raspberry"]
PREV = np.array([[0.5], [1.0], [1.5], [2.0]], np.float32)  # TF's prev_val in test_warm_start_var_with_vocab
STRATEGIES = ["stream", "restore", "assign"]


def _vocab(path, tokens) -> str:
    path.write_text("".join(t + "\n" for t in tokens))
    return str(path)


def _pair(tmp_path, source: dict, target: dict, old=PREV_VOCAB, new=NEW_VOCAB):
    builders.tf1_checkpoint(tmp_path / "src", source)
    builders.tf1_checkpoint(tmp_path / "tpl", target)  # with its .meta: restore and assign build it
    return _vocab(tmp_path / "old.txt", old), _vocab(tmp_path / "new.txt", new)


def _run(tmp_path, rules, strategy, name="out"):
    report = warmstart.transfer(str(tmp_path / "src"), str(tmp_path / "tpl"), str(tmp_path / name), rules=rules,
                                strategy=strategy)
    assert report.ok
    return builders.load_values(tmp_path / name / "model.ckpt"), report


def _vocab_rules(target, old, new, **vocab):
    return {"transforms": [{"target": target, "vocab": {"old": old, "new": new, **vocab}}]}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_vocabulary_rows_follow_their_tokens(tmp_path, strategy):
    old, new = _pair(tmp_path, {"fruit_weights": PREV}, {"fruit_weights": np.zeros((5, 1), np.float32)})
    got, report = _run(tmp_path, _vocab_rules("fruit_weights", old, new), strategy)
    np.testing.assert_array_equal(got["fruit_weights"], [[2.0], [1.5], [1.0], [0.5], [0.0]])
    entry = report.plan.entries[0]
    assert entry.action == "remap" and "4 of 5 rows from the source" in entry.reason
    assert report.plan.to_json()["variables"][0]["remap"]["new"] == 1


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_constrained_old_vocab_size(tmp_path, strategy):
    old, new = _pair(tmp_path, {"fruit_weights": PREV}, {"fruit_weights": np.zeros((5, 1), np.float32)})
    got, _ = _run(tmp_path, _vocab_rules("fruit_weights", old, new, old_vocab_size=2), strategy)
    np.testing.assert_array_equal(got["fruit_weights"], [[0.0], [0.0], [1.0], [0.5], [0.0]])  # TF's expectation


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_oov_buckets_and_new_rows_keep_the_initial_value(tmp_path, strategy):
    old, new = _pair(tmp_path, {"fruit_weights": PREV}, {"fruit_weights": np.full((6, 1), 7, np.float32)})
    got, _ = _run(tmp_path, _vocab_rules("fruit_weights", old, new, num_oov_buckets=1), strategy)
    np.testing.assert_array_equal(got["fruit_weights"], [[2.0], [1.5], [1.0], [0.5], [7.0], [7.0]])


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("fill, expected", [("zeros", 0.0), ("mean", 1.25)])
def test_new_row_choices(tmp_path, strategy, fill, expected):
    old, new = _pair(tmp_path, {"fruit_weights": PREV}, {"fruit_weights": np.full((5, 1), 7, np.float32)})
    got, _ = _run(tmp_path, _vocab_rules("fruit_weights", old, new, new_row=fill), strategy)
    np.testing.assert_allclose(got["fruit_weights"], [[2.0], [1.5], [1.0], [0.5], [expected]])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_axis_1_softmax_kernel_and_1d_bias(tmp_path, strategy):
    # TF's test_warm_start_var_with_columns_vocab: the vocabulary on the columns of a [2, vocab] kernel
    kernel = np.array([[0.5, 1.0, 1.5, 2.0], [0.4, 0.8, 1.2, 1.6]], np.float32)
    bias = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    old, new = _pair(tmp_path, {"logits/kernel": kernel, "logits/bias": bias},
                     {"logits/kernel": np.zeros((2, 5), np.float32), "logits/bias": np.full(5, 9, np.float32)})
    rules = {"transforms": [{"target": "logits/kernel", "vocab": {"old": old, "new": new, "axis": 1}},
                            {"target": "logits/bias", "vocab": {"old": old, "new": new}}]}
    got, _ = _run(tmp_path, rules, strategy)
    np.testing.assert_array_equal(got["logits/kernel"], np.float32([[2.0, 1.5, 1.0, 0.5, 0.0], [1.6, 1.2, 0.8, 0.4, 0.0]]))
    np.testing.assert_allclose(got["logits/bias"], [0.4, 0.3, 0.2, 0.1, 9.0])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_partitioned_source_and_target(tmp_path, strategy):
    # TF's test_warm_start_vocab_partitioned_*: 3 parts along the vocabulary axis, previous and current
    src = builders.partitioned_checkpoint(tmp_path / "src")
    builders.partitioned_checkpoint(tmp_path / "tpl")
    tokens = [f"t{i}" for i in range(10)]
    old, new = _vocab(tmp_path / "old.txt", tokens), _vocab(tmp_path / "new.txt", tokens[::-1])
    got, report = _run(tmp_path, _vocab_rules("emb", old, new), strategy)
    assert report.plan.counts["remap"] == 1
    np.testing.assert_array_equal(got["emb"], src["values"]["emb"][::-1])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_remap_composes_with_a_cast(tmp_path, strategy):
    old, new = _pair(tmp_path, {"fruit_weights": PREV.astype(np.float16)},
                     {"fruit_weights": np.full((5, 1), 7, np.float32)})
    rules = _vocab_rules("fruit_weights", old, new)
    assert "dtype float16 in the source" in warmstart.plan(str(tmp_path / "src"), str(tmp_path / "tpl"),
                                                           rules).problems()[0]
    got, report = _run(tmp_path, {**rules, "on_dtype_mismatch": "cast"}, strategy)
    assert "cast float16 -> float32" in report.plan.entries[0].reason
    assert got["fruit_weights"].dtype == np.float32
    np.testing.assert_array_equal(got["fruit_weights"], [[2.0], [1.5], [1.0], [0.5], [7.0]])


def _bert_vocab(seed=0):
    """1000 old tokens; the new vocabulary drops 20, reorders 100 and adds 220: 1200 tokens."""
    rng = np.random.default_rng(seed)
    old = [f"tok{i}" for i in range(1000)]
    removed = set(rng.choice(1000, 20, replace=False).tolist())
    kept = [t for i, t in enumerate(old) if i not in removed]
    moved = rng.choice(len(kept), 100, replace=False)
    kept = np.array(kept, dtype=object)
    kept[np.sort(moved)] = kept[moved]
    return old, list(kept) + [f"new{i}" for i in range(220)]


@pytest.mark.parametrize("strategy", ["stream", "assign"])
def test_bert_embedding_1000_to_1200_keeps_all_980_rows(tmp_path, strategy):
    old_vocab, new_vocab = _bert_vocab()
    emb = np.random.default_rng(1).standard_normal((1000, 64)).astype(np.float32)
    init = np.random.default_rng(2).standard_normal((1200, 64)).astype(np.float32)
    old, new = _pair(tmp_path, {"bert/embeddings/word_embeddings": emb},
                     {"bert/embeddings/word_embeddings": init}, old_vocab, new_vocab)
    rules = _vocab_rules("bert/embeddings/word_embeddings", old, new)
    got, report = _run(tmp_path, rules, strategy)
    assert "980 of 1200 rows from the source" in report.plan.entries[0].reason
    import tensorflow as tf

    value = tf.train.load_checkpoint(str(tmp_path / "out" / "model.ckpt")).get_tensor("bert/embeddings/word_embeddings")
    position = {t: i for i, t in enumerate(old_vocab)}
    for i, tok in enumerate(new_vocab):
        np.testing.assert_array_equal(value[i], emb[position[tok]] if tok in position else init[i])
    assert (value == got["bert/embeddings/word_embeddings"]).all()


def test_stream_reads_only_surviving_rows_in_small_chunks(tmp_path):
    old_vocab, new_vocab = _bert_vocab()
    emb = np.random.default_rng(1).standard_normal((1000, 64)).astype(np.float32)
    old, new = _pair(tmp_path, {"emb": emb}, {"emb": np.zeros((1200, 64), np.float32)}, old_vocab, new_vocab)
    report = warmstart.transfer(str(tmp_path / "src"), str(tmp_path / "tpl"), str(tmp_path / "out"),
                                rules=_vocab_rules("emb", old, new, new_row="zeros"), chunk_bytes=4096)
    assert report.ok
    # the source's 980 surviving rows, no more (its 20 dropped rows are not read)
    assert report.bytes_read == 980 * 64 * 4
    got = builders.load_values(tmp_path / "out" / "model.ckpt")["emb"]
    position = {t: i for i, t in enumerate(old_vocab)}
    want = np.stack([emb[position[t]] if t in position else np.zeros(64, np.float32) for t in new_vocab])
    np.testing.assert_array_equal(got, want)
    # its blocks were allocated ahead; the data file holds the tensor's bytes, no more
    assert (tmp_path / "out" / "model.ckpt.data-00000-of-00001").stat().st_size == 1200 * 64 * 4


def test_same_size_vocabulary_change_is_remapped_not_copied_by_position(tmp_path):
    shuffled = PREV_VOCAB[::-1]
    old, new = _pair(tmp_path, {"fruit_weights": PREV}, {"fruit_weights": np.zeros((4, 1), np.float32)},
                     PREV_VOCAB, shuffled)
    got, report = _run(tmp_path, _vocab_rules("fruit_weights", old, new), "stream")
    assert report.plan.entries[0].action == "remap" and "(4 moved)" in report.plan.entries[0].reason
    np.testing.assert_array_equal(got["fruit_weights"], PREV[::-1])


def test_plan_errors_name_the_transform_and_the_problem(tmp_path):
    old, new = _pair(tmp_path, {"fruit_weights": PREV}, {"fruit_weights": np.zeros((6, 1), np.float32)})
    src, tpl = str(tmp_path / "src"), str(tmp_path / "tpl")
    plan = warmstart.plan(src, tpl, _vocab_rules("fruit_weights", old, new))
    assert not plan.ok and "transforms[0]: target has 6 rows along axis 0" in plan.problems()[0]
    dup = _vocab(tmp_path / "dup.txt", ["a", "b", "a", "c", "d"])
    plan = warmstart.plan(src, tpl, _vocab_rules("fruit_weights", old, dup, num_oov_buckets=1))
    assert not plan.ok and "has a token twice (line 3" in plan.problems()[0]
    plan = warmstart.plan(src, tpl, _vocab_rules("fruit_weights", old, str(tmp_path / "absent.txt")))
    assert not plan.ok and "vocabulary file" in plan.problems()[0]
    twice = {"transforms": [{"target": "fruit.*", "overlap": True}, {"target": ".*weights", "overlap": True}]}
    assert "both match it (ambiguous)" in warmstart.plan(src, tpl, twice).problems()[0]
    unused = {"transforms": [{"target": "nothing", "overlap": True}], "on_shape_mismatch": "skip"}
    assert "transforms[0] 'nothing' matches no target variable" in warmstart.plan(src, tpl, unused).problems()
    with pytest.raises(PlanError):
        warmstart.transfer(src, tpl, str(tmp_path / "out"), rules=_vocab_rules("fruit_weights", old, new))


@pytest.mark.parametrize("old, new, old_size, new_size", [
    (b"a\r\nb\r\nc", b"c\nb\r\na\r\n", -1, -1),                      # line endings mixed, no final newline
    ("\ufeffa\nb \n\u00e4\n\u65e5\u672c\n".encode(), "\u65e5\u672c\na\nb\n\ufeffa\n".encode(), -1, -1),  # BOM, space
    ("a\x0bb\nc\x0c\nd\x85\n".encode(), "d\x85\nc\x0c\na\x0bb\n".encode(), -1, -1),  # what splitlines would split
    (b"t0\nt1\nt2\nt3\nt4\n", b"t4\nt3\nt9\nt1\nt0\n", 3, 4),          # both vocabularies cut
])
def test_rows_follow_tokens_as_tfs_own_vocabulary_remapping_says(tmp_path, old, new, old_size, new_size):
    import tensorflow as tf

    (tmp_path / "old.txt").write_bytes(old)
    (tmp_path / "new.txt").write_bytes(new)
    n_new = new_size if new_size > 0 else new.count(b"\n") + (not new.endswith(b"\n"))
    builders.tf1_checkpoint(tmp_path / "src", {"emb": np.zeros((old.count(b"\n") + 1, 2), np.float32)})
    builders.tf1_checkpoint(tmp_path / "tpl", {"emb": np.zeros((n_new, 2), np.float32)})
    rules = _vocab_rules("emb", str(tmp_path / "old.txt"), str(tmp_path / "new.txt"), old_vocab_size=old_size,
                         new_vocab_size=new_size)
    plan = warmstart.plan(str(tmp_path / "src"), str(tmp_path / "tpl"), rules)
    assert plan.ok, plan.problems()
    tf_map, _ = tf.raw_ops.GenerateVocabRemapping(
        new_vocab_file=str(tmp_path / "new.txt"), old_vocab_file=str(tmp_path / "old.txt"), new_vocab_offset=0,
        num_new_vocab=n_new, old_vocab_size=old_size)
    assert plan.entries[0].remap.index(0, n_new).tolist() == tf_map.numpy().tolist()


def test_a_mean_for_new_rows_fills_floating_point_variables_only(tmp_path):
    # Stored into an integer or boolean variable the mean of the copied rows would be truncated or made True.
    counts, flags = np.array([[1], [2], [2], [2]], np.int64), np.array([False, False, True, False])
    old, new = _pair(tmp_path, {"counts": counts, "flags": flags, "emb": PREV},
                     {"counts": np.zeros((5, 1), np.int64), "flags": np.zeros(5, bool), "emb": np.zeros((5, 1), np.float32)})
    for name, dtype in (("counts", "int64"), ("flags", "bool")):
        plan = warmstart.plan(str(tmp_path / "src"), str(tmp_path / "tpl"),
                              {"include": [name], **_vocab_rules(name, old, new, new_row="mean")})
        assert not plan.ok
        assert plan.problems()[0].endswith(f"new_row: mean of the copied rows fills floating-point variables; the "
                                           f"target is {dtype} (init, or zeros)"), plan.problems()
    assert warmstart.plan(str(tmp_path / "src"), str(tmp_path / "tpl"),
                          {"include": ["emb"], **_vocab_rules("emb", old, new, new_row="mean")}).ok


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_string_tensors_are_remapped_as_strings(tmp_path, strategy):
    # A string table over the vocabulary and a string matrix cut by an overlap copy (no element left to fill):
    # strings stay the bytes they were (never numbers), and zeros for a string are empty strings, as tf.zeros.
    names = [b"apple", "b\u00e4nana".encode(), b"gu\x00ava", b"orange"]
    src, tpl = {"names": names, "grid": [[b"1", b"2"], [b"3", b"4"], [b"5", b"6"]]}, {"names": [b"?"] * 5,
                                                                                     "grid": [[b"x", b"y"]] * 2}
    old, new = _pair(tmp_path, src, tpl)
    rules = {"transforms": [{"target": "names", "vocab": {"old": old, "new": new, "new_row": "zeros"}},
                            {"target": "grid", "overlap": True}]}
    got, _ = _run(tmp_path, rules, strategy)
    assert got["names"].tolist() == [b"orange", b"gu\x00ava", "b\u00e4nana".encode(), b"apple", b""]
    assert got["grid"].tolist() == [[b"1", b"2"], [b"3", b"4"]]
    mean = warmstart.plan(str(tmp_path / "src"), str(tmp_path / "tpl"),
                          {"include": ["names"], **_vocab_rules("names", old, new, new_row="mean")})
    assert not mean.ok and "new_row: mean" in mean.problems()[0] and "the target is string" in mean.problems()[0]


def test_an_empty_line_is_no_token_and_a_line_loses_one_carriage_return_as_tf_reads_them(tmp_path):
    # TF's vocabulary reader (GenerateVocabRemapping, under VocabInfo) refuses an empty line in either file, the
    # same line in both included: a blank row must not take another blank row's values. It drops one "\r" before
    # each "\n": "apple\r\r" stays "apple\r", which is not "apple".
    src, tpl = str(tmp_path / "src"), str(tmp_path / "tpl")
    builders.tf1_checkpoint(src, {"fruit_weights": PREV})
    builders.tf1_checkpoint(tpl, {"fruit_weights": np.zeros((4, 1), np.float32)})
    blank_old, blank_new = tmp_path / "blank_old.txt", tmp_path / "blank_new.txt"
    blank_old.write_text("apple\n\nguava\norange\n")
    blank_new.write_text("orange\nguava\n\napple\n")
    plan = warmstart.plan(src, tpl, _vocab_rules("fruit_weights", str(blank_old), str(blank_new)))
    assert not plan.ok and "the old vocabulary" in plan.problems()[0] and "has an empty line" in plan.problems()[0]
    crs_old, crs_new = tmp_path / "crs_old.txt", tmp_path / "crs_new.txt"
    crs_old.write_bytes(b"apple\r\r\nbanana\r\nguava\norange")
    crs_new.write_bytes(b"orange\r\nguava\r\nbanana\napple\r")
    rules = _vocab_rules("fruit_weights", str(crs_old), str(crs_new))
    got, _ = _run(tmp_path, rules, "stream")
    np.testing.assert_array_equal(got["fruit_weights"], [[2.0], [1.5], [1.0], [0.0]])  # 'apple\r' is not 'apple'


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_overlap_copy_of_a_grown_head_and_position_table(tmp_path, strategy):
    head = np.arange(12, dtype=np.float32).reshape(4, 3)  # 3 classes
    pos = np.arange(8, dtype=np.float32).reshape(4, 2)  # 4 positions
    builders.tf1_checkpoint(tmp_path / "src", {"head/kernel": head, "pos": pos})
    builders.tf1_checkpoint(tmp_path / "tpl", {"head/kernel": np.full((4, 10), -1, np.float32),
                                               "pos": np.full((6, 2), -1, np.float32)})
    rules = {"transforms": [{"target": "head/kernel|pos", "overlap": True}]}
    got, report = _run(tmp_path, rules, strategy)
    want = np.full((4, 10), -1, np.float32)
    want[:, :3] = head
    np.testing.assert_array_equal(got["head/kernel"], want)
    np.testing.assert_array_equal(got["pos"], np.concatenate([pos, np.full((2, 2), -1, np.float32)]))
    assert "overlap copy: region [4, 3]" in report.plan.entries[0].reason


def _keras_embedding(rows):
    import keras

    model = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(rows, 4, name="emb")])
    return model


def _keras_transfer(tmp_path, **vocab):
    """A 4-row Keras embedding into a 5-row one: the weights file streamed (its result loaded into a model),
    and the models themselves (src, dst: the live copy's); the source's table."""
    old, new = _vocab(tmp_path / "old.txt", PREV_VOCAB), _vocab(tmp_path / "new.txt", NEW_VOCAB)
    src, dst = _keras_embedding(4), _keras_embedding(5)
    table = np.arange(16, dtype=np.float32).reshape(4, 4)
    src.get_layer("emb").embeddings.assign(table)
    src.save_weights(tmp_path / "src.weights.h5")
    dst.save_weights(tmp_path / "tpl.weights.h5")
    rules = _vocab_rules(".*emb.*", old, new, **vocab)
    warmstart.transfer(str(tmp_path / "src.weights.h5"), str(tmp_path / "tpl.weights.h5"), str(tmp_path / "out"),
                       rules=rules)
    loaded = _keras_embedding(5)
    loaded.load_weights(tmp_path / "out" / "model.weights.h5")
    return np.asarray(loaded.get_layer("emb").embeddings), src, dst, rules, table


def test_keras_target_weights_file_and_live_copies(tmp_path):
    from_file, src, dst, rules, table = _keras_transfer(tmp_path)
    initial = np.asarray(dst.get_layer("emb").embeddings)
    want = np.concatenate([table[[3, 2, 1, 0]], initial[4:]])
    np.testing.assert_array_equal(from_file, want)
    report = warmstart.copy_weights(src, dst, rules)
    assert report.plan.counts["remap"] == 1
    np.testing.assert_array_equal(np.asarray(dst.get_layer("emb").embeddings), want)


def test_live_tf1_sessions(tmp_path):
    import tensorflow as tf

    old, new = _vocab(tmp_path / "old.txt", PREV_VOCAB), _vocab(tmp_path / "new.txt", NEW_VOCAB)
    sessions = []
    for value in (PREV, np.full((5, 1), 7, np.float32)):
        graph = tf.Graph()
        with graph.as_default():
            var = tf.compat.v1.get_variable("fruit_weights", initializer=tf.constant(value))
            session = tf.compat.v1.Session(graph=graph)
            session.run(var.initializer)
        sessions.append((session, var))
    warmstart.copy_variables(sessions[0][0], sessions[1][0], _vocab_rules("fruit_weights", old, new))
    np.testing.assert_array_equal(sessions[1][0].run(sessions[1][1]), [[2.0], [1.5], [1.0], [0.5], [7.0]])
    for session, _ in sessions:
        session.close()


def test_stream_from_s3_reads_about_the_surviving_rows(tmp_path, s3_server, s3_bucket, monkeypatch):
    old_vocab, new_vocab = _bert_vocab()
    emb = np.random.default_rng(1).standard_normal((1000, 256)).astype(np.float32)
    old, new = _pair(tmp_path, {"emb": emb}, {"emb": np.zeros((1200, 256), np.float32)}, old_vocab, new_vocab)
    s3 = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(s3, tmp_path / "src", f"{s3_bucket}/src")
    s3.put_file(new, f"{s3_bucket}/new.txt")
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    from servers import clear_fs_caches

    clear_fs_caches()
    report = warmstart.transfer(f"{s3_bucket}/src", str(tmp_path / "tpl"), str(tmp_path / "out"),
                                rules=_vocab_rules("emb", old, f"{s3_bucket}/new.txt"))
    assert report.ok
    surviving = 980 * 256 * 4
    template = 220 * 256 * 4  # the new rows' initial values, read from the template
    assert surviving + template <= report.bytes_read <= 1.05 * surviving + template
    got = builders.load_values(tmp_path / "out" / "model.ckpt")["emb"]
    position = {t: i for i, t in enumerate(old_vocab)}
    rows = [i for i, t in enumerate(new_vocab) if t in position]
    np.testing.assert_array_equal(got[rows], emb[[position[new_vocab[i]] for i in rows]])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_overlap_copy_from_a_partitioned_source(tmp_path, strategy):
    """A partitioned [10, 4] table into a longer [12, 4] one: the 10 rows assembled from the parts, 2 kept."""
    src = builders.partitioned_checkpoint(tmp_path / "src")
    kernel = src["values"]["dense/kernel"]
    builders.tf1_checkpoint(tmp_path / "tpl", {"emb": np.full((12, 4), -1, np.float32), "dense/kernel": kernel * 0})
    got, report = _run(tmp_path, {"transforms": [{"target": "emb", "overlap": True}]}, strategy)
    assert report.plan.counts["remap"] == 1
    np.testing.assert_array_equal(got["emb"][:10], src["values"]["emb"])
    np.testing.assert_array_equal(got["emb"][10:], np.full((2, 4), -1, np.float32))
    np.testing.assert_array_equal(got["dense/kernel"], kernel)


def test_overlap_copy_from_s3_reads_only_the_region(tmp_path, s3_server, s3_bucket, monkeypatch):
    """A position table that shrinks (512 -> 384 rows) from moto S3: only the kept rows' bytes are read."""
    pos = np.random.default_rng(2).standard_normal((512, 64)).astype(np.float32)
    builders.tf1_checkpoint(tmp_path / "src", {"pos": pos})
    builders.tf1_checkpoint(tmp_path / "tpl", {"pos": np.zeros((384, 64), np.float32)})
    s3 = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(s3, tmp_path / "src", f"{s3_bucket}/src")
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    from servers import clear_fs_caches

    clear_fs_caches()
    report = warmstart.transfer(f"{s3_bucket}/src", str(tmp_path / "tpl"), str(tmp_path / "out"),
                                rules={"transforms": [{"target": "pos", "overlap": True}]})
    assert report.ok
    kept = 384 * 64 * 4
    assert kept <= report.bytes_read <= 1.05 * kept
    np.testing.assert_array_equal(builders.load_values(tmp_path / "out" / "model.ckpt")["pos"], pos[:384])


# --------------------------------------------------------------------------- declared initializers (backup_initializer)

EMB = "input_layer/sc_vocab_embedding/embedding_weights"


def _partitioned_template(dirpath, name, shape, parts):
    """A TF1 checkpoint (with its .meta) of one variable cut into ``parts`` along axis 0, initialized as an
    ``embedding_column``'s: a truncated normal (so a row kept at its initial value is never 0.42)."""
    import tensorflow as tf

    dirpath.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.get_variable(name, shape=shape, partitioner=tf.compat.v1.fixed_size_partitioner(parts),
                                  initializer=tf.compat.v1.truncated_normal_initializer(stddev=1.0, seed=1))
        saver = tf.compat.v1.train.Saver(save_relative_paths=True)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(dirpath / "model.ckpt"))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_backup_initializer_fills_new_rows_as_tf_does(tmp_path, strategy):
    # TF's testWarmStartEmbeddingColumn: a [6, 2] embedding in 2 parts warm-started from [4, 2] with
    # VocabInfo(backup_initializer=random_uniform_initializer(minval=0.42, maxval=0.42))
    builders.tf1_checkpoint(tmp_path / "src", {EMB: np.float32([[0.5, 0.4], [1.0, 1.1], [2.0, 2.2], [3.0, 3.3]])})
    _partitioned_template(tmp_path / "tpl", EMB, [6, 2], 2)
    old = _vocab(tmp_path / "old.txt", PREV_VOCAB)
    new = _vocab(tmp_path / "new.txt", ["orange", "guava", "banana", "apple", "raspberry", "blueberry"])
    backup = {"random_uniform": {"minval": 0.42, "maxval": 0.42}}
    got, report = _run(tmp_path, _vocab_rules(EMB, old, new, new_row=backup), strategy)
    # TF's expected values, part 0 then part 1
    np.testing.assert_allclose(got[EMB], [[3.0, 3.3], [2.0, 2.2], [1.0, 1.1], [0.5, 0.4], [0.42, 0.42], [0.42, 0.42]])
    assert "2 new rows: random_uniform(0.42, 0.42, seed 0)" in report.plan.entries[0].reason
    assert report.plan.to_json()["variables"][0]["remap"]["initializer"] == {
        "random_uniform": {"minval": 0.42, "maxval": 0.42, "seed": 0}}


@pytest.mark.parametrize("backup", [{"random_uniform": {"minval": -0.05, "maxval": 0.05, "seed": 7}},
                                    {"random_normal": {"mean": 1.0, "stddev": 0.5, "seed": 3}},
                                    {"truncated_normal": {"stddev": 0.5, "seed": 3}}])
def test_initializer_values_are_the_same_on_every_strategy_and_chunk_size(tmp_path, backup):
    old_vocab, new_vocab = _bert_vocab()
    emb = np.random.default_rng(1).standard_normal((1000, 64)).astype(np.float32)
    init = np.full((1200, 64), 99, np.float32)
    old, new = _pair(tmp_path, {"emb": emb}, {"emb": init}, old_vocab, new_vocab)
    rules = _vocab_rules("emb", old, new, new_row=backup)
    results = {}
    for name, kwargs in {"stream": {"chunk_bytes": 1 << 20}, "stream-small": {"chunk_bytes": 4096},
                         "assign": {"strategy": "assign"}}.items():
        report = warmstart.transfer(str(tmp_path / "src"), str(tmp_path / "tpl"), str(tmp_path / name), rules=rules,
                                    **kwargs)
        results[name] = builders.load_values(tmp_path / name / "model.ckpt")["emb"]
    position = {t: i for i, t in enumerate(old_vocab)}
    fresh = [i for i, t in enumerate(new_vocab) if t not in position]
    kept = [i for i, t in enumerate(new_vocab) if t in position]
    assert len(fresh) == 220 and "220 new rows: " + next(iter(backup)) in report.plan.entries[0].reason
    for got in results.values():
        np.testing.assert_array_equal(got, results["assign"])
        np.testing.assert_array_equal(got[kept], emb[[position[new_vocab[i]] for i in kept]])
    values = results["assign"][fresh]
    assert (values != 99).all() and len(np.unique(values)) > 0.99 * values.size  # drawn, not kept or repeated
    if "random_uniform" in backup:
        assert values.min() >= -0.05 and values.max() < 0.05 and abs(values.mean()) < 0.002
    elif "random_normal" in backup:
        assert abs(values.mean() - 1.0) < 0.01 and abs(values.std() - 0.5) < 0.01
    else:  # TF's truncation at two standard deviations: std 0.88 of the untruncated one
        assert np.abs(values).max() <= 1.0 and abs(values.std() - 0.88 * 0.5) < 0.01


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_initializer_for_columns_oov_buckets_and_overlap_regions(tmp_path, strategy):
    kernel = np.array([[0.5, 1.0, 1.5, 2.0], [0.4, 0.8, 1.2, 1.6]], np.float32)
    head = np.arange(12, dtype=np.float32).reshape(4, 3)
    old, new = _pair(tmp_path, {"logits/kernel": kernel, "head": head},
                     {"logits/kernel": np.zeros((2, 6), np.float32), "head": np.full((4, 5), -1, np.float32)})
    rules = {"transforms": [
        {"target": "logits/kernel", "vocab": {"old": old, "new": new, "axis": 1, "num_oov_buckets": 1,
                                              "new_row": {"constant": 0.25}}},
        {"target": "head", "overlap": True, "new_values": {"random_uniform": {"minval": 5, "maxval": 6, "seed": 1}}}]}
    got, report = _run(tmp_path, rules, strategy)
    np.testing.assert_array_equal(got["logits/kernel"], np.float32([[2.0, 1.5, 1.0, 0.5, 0.25, 0.25],
                                                                    [1.6, 1.2, 0.8, 0.4, 0.25, 0.25]]))
    np.testing.assert_array_equal(got["head"][:, :3], head)
    assert ((got["head"][:, 3:] >= 5) & (got["head"][:, 3:] < 6)).all()
    reasons = {e.target: e.reason for e in report.plan.entries}
    assert "8 elements: random_uniform(5, 6, seed 1)" in reasons["head"]
    assert "2 new columns: constant(0.25) (1 OOV buckets)" in reasons["logits/kernel"]
    if strategy == "stream":  # the same values whatever the strategy
        other, _ = _run(tmp_path, rules, "assign", name="out-assign")
        np.testing.assert_array_equal(got["head"], other["head"])


def test_initializer_checked_when_the_rules_are_read_and_the_plan_made(tmp_path):
    old, new = _pair(tmp_path, {"ids": np.arange(4, dtype=np.int32).reshape(4, 1)},
                     {"ids": np.zeros((5, 1), np.int32)})
    src, tpl = str(tmp_path / "src"), str(tmp_path / "tpl")
    plan = warmstart.plan(src, tpl, _vocab_rules("ids", old, new, new_row={"random_normal": {"seed": 1}}))
    assert not plan.ok and plan.problems()[0].endswith(
        "transforms[0]: new_row: random_normal(mean 0, stddev 0.05, seed 1) fills floating-point variables; "
        "the target is int32")
    plan = warmstart.plan(src, tpl, _vocab_rules("ids", old, new, new_row={"constant": 0.5}))
    assert not plan.ok and "constant(0.5) does not fit int32 (it would be 0)" in plan.problems()[0]
    got, _ = _run(tmp_path, _vocab_rules("ids", old, new, new_row={"constant": -3}), "stream")
    np.testing.assert_array_equal(got["ids"].ravel(), [3, 2, 1, 0, -3])
    for bad, says in [({"random_uniform": {"minval": 1, "maxval": 0}}, "maxval 0.0 is below minval 1.0"),
                      ({"constant": 1, "random_normal": {}}, "received 2 (constant, random_normal)"),
                      ({"random_normal": {"stddev": -1}}, "greater than or equal to 0"),
                      ({"uniform": {}}, "unknown key 'uniform' (did you mean 'random_uniform'?)"), ("ones", "new_row")]:
        with pytest.raises(warmstart.UsageError, match=re.escape(says)):
            warmstart.plan(src, tpl, _vocab_rules("ids", old, new, new_row=bad))


# --------------------------------------------------------------------------- partial reads: checksums not verified

def _cli(*args, cwd):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    env["PREFECT_HOME"] = str(cwd / "prefect-home")  # no Prefect API: the engine runs in process
    done = subprocess.run([sys.executable, "-m", "warmstart.cli", "transfer", *args], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_tensors_read_in_part_are_reported_in_the_report_manifest_and_cli(tmp_path):
    import json

    from warmstart.planning.report import unchecked_words

    old_vocab, new_vocab = _bert_vocab()
    emb = np.random.default_rng(1).standard_normal((1000, 8)).astype(np.float32)
    kernel = np.random.default_rng(2).standard_normal((8, 1000)).astype(np.float32)
    old, new = _pair(tmp_path, {"emb": emb, "logits": kernel},
                     {"emb": np.zeros((1200, 8), np.float32), "logits": np.zeros((8, 1200), np.float32)},
                     old_vocab, new_vocab)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"transforms": [{"target": "emb", "vocab": {"old": old, "new": new}},
                                                {"target": "logits", "vocab": {"old": old, "new": new, "axis": 1}}]}))
    src, tpl = str(tmp_path / "src"), str(tmp_path / "tpl")
    line = _cli(src, tpl, str(tmp_path / "out"), "--rules", str(rules), cwd=tmp_path)
    # emb: the 980 surviving rows of the source's 1000, the template's 220 new rows (neither CRC checked);
    # logits (axis 1): every row of both read whole, in order (both CRCs checked)
    assert line.rstrip().endswith("; 2 tensors read in part: their checksums could not be verified "
                                  "(source 'emb', template 'emb')"), line
    unchecked = [{"checkpoint": "source", "source": "main", "key": "emb"}, {"checkpoint": "template", "key": "emb"}]
    assert json.loads((tmp_path / "out" / "warmstart.json").read_text())["unchecked"] == unchecked
    doc = json.loads(_cli(src, tpl, str(tmp_path / "out-json"), "--rules", str(rules), "--json", cwd=tmp_path))
    assert doc["unchecked"] == unchecked
    report = warmstart.transfer(src, tpl, str(tmp_path / "out-api"), rules=str(rules))
    assert report.unchecked == tuple(unchecked) and report.to_json()["unchecked"] == unchecked
    zeros = json.loads(rules.read_text())
    zeros["transforms"][0]["vocab"]["new_row"] = "zeros"  # no initial values read: only the source's rows
    assert warmstart.transfer(src, tpl, str(tmp_path / "out-zeros"), rules=zeros).unchecked == (unchecked[0],)
    # a remap from a named source: the record names it
    builders.tf1_checkpoint(tmp_path / "run_b", {"emb": emb})
    named = {**json.loads(rules.read_text()), "sources": {"run_b": str(tmp_path / "run_b")},
             "fill_from": [["emb", "run_b"]]}
    named["transforms"][0]["vocab"]["new_row"] = "zeros"
    report = warmstart.transfer(src, tpl, str(tmp_path / "out-named"), rules=named)
    assert report.unchecked == ({"checkpoint": "source", "source": "run_b", "key": "emb"},)
    assert unchecked_words(report.to_json()["unchecked"]) == (
        "1 tensor read in part: its checksum could not be verified (source run_b 'emb')")
    # a plain copy reads every tensor whole: every checksum verified, none listed
    line = _cli(src, src, str(tmp_path / "copy"), cwd=tmp_path)
    assert "read in part" not in line
    assert json.loads((tmp_path / "copy" / "warmstart.json").read_text())["unchecked"] == []
    assert warmstart.transfer(src, src, str(tmp_path / "copy-api")).to_json()["unchecked"] == []


# --------------------------------------------------------------------------- a plan made for other inputs

def test_a_plan_for_another_source_is_refused_before_writing(tmp_path):
    # transfer(plan=...) executes a plan exactly: here one made for a source that has 'fruit_weights', given
    # another source (the stream used to raise a bare KeyError from its remap, then a missing-tensor error)
    old, new = _pair(tmp_path, {"fruit_weights": PREV, "bias": np.ones(2, np.float32)},
                     {"fruit_weights": np.zeros((5, 1), np.float32), "bias": np.zeros(2, np.float32)})
    plan = warmstart.plan(str(tmp_path / "src"), str(tmp_path / "tpl"), _vocab_rules("fruit_weights", old, new))
    assert plan.ok and plan.counts["remap"] == 1
    builders.tf1_checkpoint(tmp_path / "other", {"bias": np.ones(2, np.float32)})
    with pytest.raises(warmstart.UsageError, match=r"the plan was made for source 'main' \(.*src/model.ckpt\).*"
                                                    r"not for '.*other'"):
        warmstart.transfer(str(tmp_path / "other"), str(tmp_path / "tpl"), str(tmp_path / "out"), plan=plan)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_stream_remap_names_the_variable_of_a_tensor_missing_from_its_inputs(tmp_path):
    # stream_remap on its own (the stream checks every entry before it, so no transfer reaches this): real files
    from warmstart.formats.bundle import BundleReader, BundleWriter
    from warmstart.storage import resolve
    from warmstart.strategies.remap import stream_remap
    from warmstart.strategies.stream import StreamStats, _read_block

    old, new = _pair(tmp_path, {"fruit_weights": PREV}, {"fruit_weights": np.zeros((5, 1), np.float32)})
    entry = warmstart.plan(str(tmp_path / "src"), str(tmp_path / "tpl"), _vocab_rules("fruit_weights", old, new)).entries[0]
    builders.tf1_checkpoint(tmp_path / "other", {"bias": np.ones(2, np.float32)})
    other = BundleReader(str(tmp_path / "other" / "model.ckpt"))
    writer = BundleWriter(resolve(str(tmp_path / "out" / "model.ckpt")))
    for source, template, says in [(other, None, "its source tensor 'fruit_weights' is not in"),
                                   (BundleReader(str(tmp_path / "src" / "model.ckpt")), other,
                                    "its initial value 'fruit_weights' is not in the template")]:
        with pytest.raises(warmstart.InputNotFoundError, match=f"target 'fruit_weights': {says}"):
            stream_remap(entry, source, template, writer, 4096, StreamStats(), _read_block, (4, 4))
    writer.abort()


def test_a_template_read_whole_in_order_has_its_checksum_verified(tmp_path):
    # axis 1: each row of the output holds new columns, so every template row is read, in order: its CRC
    # is checked (a flipped byte fails the transfer); the source's too
    from warmstart.formats.bundle import BundleReader

    kernel = np.array([[0.5, 1.0, 1.5, 2.0], [0.4, 0.8, 1.2, 1.6]], np.float32)
    old, new = _pair(tmp_path, {"logits": kernel}, {"logits": np.full((2, 5), 7, np.float32)})
    rules = _vocab_rules("logits", old, new, axis=1)
    got, report = _run(tmp_path, rules, "stream")
    assert report.unchecked == () and got["logits"][:, 4].tolist() == [7.0, 7.0]
    data = next((tmp_path / "tpl").glob("*.data-*"))
    entry = BundleReader(str(tmp_path / "tpl")).records["logits"].entry
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 1] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(warmstart.CorruptCheckpointError, match=r"tensor 'logits' fails its CRC32C check"):
        warmstart.transfer(str(tmp_path / "src"), str(tmp_path / "tpl"), str(tmp_path / "out2"), rules=rules)
    assert not (tmp_path / "out2").exists()


def test_initializer_on_keras_weights_and_live_copies(tmp_path):
    from_file, src, dst, rules, table = _keras_transfer(
        tmp_path, new_row={"random_normal": {"mean": 3.0, "stddev": 0.1, "seed": 5}})
    np.testing.assert_array_equal(from_file[:4], table[[3, 2, 1, 0]])
    assert np.abs(from_file[4] - 3.0).max() < 0.5 and len(set(from_file[4].tolist())) == 4
    warmstart.copy_weights(src, dst, rules)
    np.testing.assert_array_equal(np.asarray(dst.get_layer("emb").embeddings), from_file)  # the same numbers

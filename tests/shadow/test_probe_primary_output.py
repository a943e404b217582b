"""What the candidate probe refuses of a primary output, and what it reports of the one it
saw: its columns (a dynamic width) and the range of its values (logits or probabilities)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from probe_models import class_major, dynamic_width, logits, rank_three, softmax, string_label

from shadow import CandidateRejectedError, OnnxModel, Signature, inspect_candidate


def _saved(tmp_path: Path, model: onnx.ModelProto) -> Path:
    path = tmp_path / "candidate.onnx"
    onnx.save_model(model, path)
    return path


def test_refuses_a_primary_output_of_rank_three(tmp_path: Path) -> None:
    """`[N, 2, 2]` passed (only its first dimension was checked): as champion every request
    was a 500, as challenger it dropped the other challengers' shadow outputs."""
    with pytest.raises(CandidateRejectedError) as info:
        inspect_candidate(_saved(tmp_path, rank_three()))
    assert info.value.code == "unsupported_signature"
    assert "'probabilities' must have rank 1 or 2" in info.value.message
    assert "[3, 2, 2]" in info.value.message


@pytest.mark.parametrize("classes", [2, 3, 5], ids=["two-classes", "three-classes", "five-classes"])
def test_refuses_a_class_major_output_whatever_its_classes(tmp_path: Path, classes: int) -> None:
    """The probe scored two rows, so a binary `[2, N]` output came back `[2, 2]` and passed;
    a run of any single row count matches some class count."""
    with pytest.raises(CandidateRejectedError) as info:
        inspect_candidate(_saved(tmp_path, class_major(classes)))
    assert info.value.code == "unsupported_signature"
    assert "one row per input row" in info.value.message


@pytest.mark.parametrize("classes", [1, 3], ids=["one-column", "three-columns"])
def test_reports_the_width_it_saw_of_a_dynamic_primary_output(tmp_path: Path, classes: int) -> None:
    info = inspect_candidate(_saved(tmp_path, dynamic_width(classes)))
    assert info.signature.primary_width is None  # the graph leaves it dynamic
    assert info.signature.probed is not None
    assert info.signature.probed.width == classes


def test_reports_the_range_of_the_primary_output_on_its_rows(tmp_path: Path) -> None:
    """Rows of zeros give logits of 0: the rows of 1, -1 and 1000 show them."""
    seen = inspect_candidate(_saved(tmp_path, logits())).signature.probed
    assert seen is not None and seen.width == 2
    assert seen.low is not None and seen.high is not None
    assert seen.low < 0 and seen.high > 1000
    probabilities = inspect_candidate(_saved(tmp_path, softmax())).signature.probed
    assert (
        probabilities is not None
        and probabilities.low is not None
        and probabilities.high is not None
    )
    assert 0 <= probabilities.low <= probabilities.high <= 1


def test_the_probed_output_survives_the_signature_s_json_and_is_not_compared(
    tmp_path: Path,
) -> None:
    """The served signature (read from a session) equals the probed one: a promotion or a
    comparison of signatures is not changed by what the probe saw."""
    model = softmax()
    info = inspect_candidate(_saved(tmp_path, model))
    assert Signature.from_dict(info.signature.to_dict()) == info.signature
    assert Signature.from_dict(info.signature.to_dict()).probed == info.signature.probed
    assert info.signature == OnnxModel.from_bytes(model.SerializeToString()).signature


def test_a_string_class_label_is_refused_naming_its_type_and_the_remedy(tmp_path: Path) -> None:
    """Converted with `zipmap=False` as the old message advised, and told to do so again."""
    with pytest.raises(CandidateRejectedError) as info:
        inspect_candidate(_saved(tmp_path, string_label()))
    message = info.value.message
    assert info.value.code == "unsupported_signature"
    assert "'label' has type tensor(string)" in message
    assert "encode classes as integers" in message
    assert "zipmap" not in message

from __future__ import annotations

from pathlib import Path

import pytest

from ltr_pipeline.errors import DataError
from ltr_pipeline.letor import read_svmlight


def test_qid_lines_comments_and_absent_indices(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("2 qid:7 1:0.5 3:1.5 # doc a\n0 qid:7 2:0.25\n\n1 qid:9 3:2 #doc c\n")
    data = read_svmlight(path)
    assert data.qsizes.tolist() == [2, 1]
    assert data.labels.tolist() == [2, 0, 1]
    assert data.features.tolist() == [[0.5, 0.0, 1.5], [0.0, 0.25, 0.0], [0.0, 0.0, 2.0]]


def test_query_file_and_width_of_the_training_file(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("1 1:1\n0 2:1\n3 5:9\n")
    (tmp_path / "t.txt.query").write_text("2\n1\n")
    data = read_svmlight(tmp_path / "t.txt", n_features=3)
    assert data.qsizes.tolist() == [2, 1]
    assert data.features.shape == (3, 3)  # index 5 is beyond the training file's features: dropped


def test_broken_files_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("1 1:1\n")
    with pytest.raises(DataError, match="no qid"):
        read_svmlight(tmp_path / "a.txt")
    (tmp_path / "b.txt").write_text("1 1:x\n")
    with pytest.raises(DataError, match=r"b\.txt:1"):
        read_svmlight(tmp_path / "b.txt")
    (tmp_path / "c.txt").write_text("1 1:1\n0 1:2\n")
    (tmp_path / "c.txt.query").write_text("3\n")
    with pytest.raises(DataError, match="add up to 3"):
        read_svmlight(tmp_path / "c.txt")

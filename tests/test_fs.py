"""Paths: remote ones are told apart from local ones; a directory is removed with what it holds."""

from lifecycle_recs.fs import filesystem, is_remote_path, remove_dir


def test_remote_paths_are_uris_or_dbfs_and_volumes_are_local():
    assert is_remote_path("s3://bucket/x") and is_remote_path("abfss://c@a/x")
    assert is_remote_path("dbfs:/x") and is_remote_path("file:///tmp/x")
    assert not is_remote_path("/Volumes/main/s/v") and not is_remote_path("lakehouse")
    assert not is_remote_path(None)


def test_remove_dir_removes_what_it_holds_and_ignores_an_absent_one(tmp_path):
    d = tmp_path / "feed" / "part"
    d.mkdir(parents=True)
    (d / "a.parquet").write_bytes(b"x")
    remove_dir(str(tmp_path / "feed"))
    assert not (tmp_path / "feed").exists()
    remove_dir(str(tmp_path / "feed"))  # nothing there: no error
    fs, path = filesystem(str(tmp_path))
    assert path == str(tmp_path) and fs.type_name == "local"

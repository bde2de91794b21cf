import numpy as np

from cxr.data.cache import PixelCache
from cxr.data.discovery import discover
from cxr.data.preprocess import resize_square
from cxr.data.reader import read_image


def test_cache_round_trip_and_second_pass_decodes_nothing(tmp_path, data):
    paths = [r.path for r in discover(data / "chest_xray_originals").records][:8]
    first = PixelCache(64, root=tmp_path).load(paths, workers=2)
    assert len(first) == 8 and not first.failures
    expected = resize_square(read_image(paths[3]).pixels, 64)
    assert np.array_equal(first[3], expected)
    chunks = sorted((tmp_path / "squash-64").glob("chunk-*"))
    second = PixelCache(64, root=tmp_path).load(paths)
    assert sorted((tmp_path / "squash-64").glob("chunk-*")) == chunks  # nothing new written
    assert all(np.array_equal(first[i], second[i]) for i in range(8))


def test_bad_files_are_listed_and_the_rest_cached(tmp_path, damaged_folder):
    paths = [r.path for r in discover(damaged_folder).records]
    cached = PixelCache(32, root=tmp_path / "c").load(paths)
    assert len(cached) == 4
    assert sorted(f.path.name for f in cached.failures) == [
        "empty.jpeg",
        "notes.png",
        "truncated.jpeg",
    ]


def test_a_half_written_or_garbled_index_row_is_decoded_again(tmp_path, data):
    """Processes share the cache: one may read the index while another's append is half
    written, or a crash may cut a row; such rows cost a decode, never a wrong image."""
    paths = [r.path for r in discover(data / "chest_xray_originals").records][:4]
    first = PixelCache(64, root=tmp_path).load(paths[:2])
    index = tmp_path / "squash-64" / "index.jsonl"
    rows = index.read_text().splitlines(keepends=True)
    index.write_text(rows[0][:-10] + rows[1])  # row 0 garbled
    second = PixelCache(64, root=tmp_path).load(paths[:2])
    assert len(list((tmp_path / "squash-64").glob("chunk-*"))) == 2  # image 0 decoded again
    assert all(np.array_equal(first[i], second[i]) for i in range(2))
    with index.open("a") as fh:
        fh.write('{"digest": "')  # a row being written as the next process reads
    third = PixelCache(64, root=tmp_path).load(paths)
    assert len(third) == 4 and not third.failures
    expected = resize_square(read_image(paths[3]).pixels, 64)
    assert np.array_equal(third[3], expected)

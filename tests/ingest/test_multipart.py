"""The streaming multipart reader: parts as clients encode them, whatever the read sizes, never held whole."""

from __future__ import annotations

import io

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ingest.multipart import MAX_HEADER_BYTES, MAX_PREAMBLE_BYTES, MultipartError, MultipartReader, boundary_of


class _Trickle(io.RawIOBase):
    """A body arriving `step` bytes at a time."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.at = data, step, 0

    def read(self, size: int = -1) -> bytes:
        piece = self.data[self.at : self.at + self.step]
        self.at += len(piece)
        return piece


def _encode(files: list[tuple[str, tuple[str, bytes]]], data: dict[str, str] | None = None) -> tuple[bytes, bytes]:
    request = httpx.Request("POST", "http://test/", files=files, data=data)
    return request.read(), boundary_of(request.headers["content-type"])


def _parts(body: bytes, boundary: bytes, step: int = 1 << 20, read_size: int = 4096) -> list[tuple[str, str | None, bytes]]:
    reader = MultipartReader(_Trickle(body, step), boundary)
    parts = []
    while (part := reader.next_part()) is not None:
        parts.append((part.name, part.filename, b"".join(iter(lambda p=part: p.read(read_size), b""))))
    return parts


@pytest.mark.parametrize("step", [1, 3, 64, 1000, 1 << 20])
def test_parts_encoded_by_a_client_are_read_back_whatever_the_arrival_sizes(step):
    files = [("file", ("a/doc 1.pdf", b"%PDF-1.7\r\n--not a delimiter\r\n" * 50)), ("file", ("b.xml", b"<x/>"))]
    body, boundary = _encode(files, {"metadata": '{"title": "x"}'})
    assert _parts(body, boundary, step=step, read_size=7) == [
        ("metadata", None, b'{"title": "x"}'),
        ("file", "a/doc 1.pdf", files[0][1][1]),
        ("file", "b.xml", b"<x/>"),
    ]


@settings(max_examples=60, deadline=None)
@given(
    contents=st.lists(st.binary(max_size=3000), min_size=1, max_size=4),
    step=st.integers(min_value=1, max_value=5000),
    read_size=st.integers(min_value=1, max_value=5000),
)
def test_any_bytes_survive_the_round_trip(contents, step, read_size):
    files = [("file", (f"f{n}.bin", data)) for n, data in enumerate(contents)]
    body, boundary = _encode(files)
    assert [p[2] for p in _parts(body, boundary, step, read_size)] == contents


def test_bytes_that_almost_make_a_delimiter_stay_in_the_part():
    boundary = b"XyZ"
    tricky = b"\r\n--XyQ\r\n--Xy\r\n-"
    body = b'--XyZ\r\nContent-Disposition: form-data; name="f"; filename="t"\r\n\r\n' + tricky + b"\r\n--XyZ--\r\n"
    assert _parts(body, boundary, step=2, read_size=1) == [("f", "t", tricky)]


def test_a_preamble_and_an_epilogue_are_ignored():
    body = b'preamble\r\n--B\r\nContent-Disposition: form-data; name="x"\r\n\r\nvalue\r\n--B--\r\nepilogue'
    assert _parts(body, b"B") == [("x", None, b"value")]


def test_an_extended_filename_is_decoded():
    body = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="x"; filename*=UTF-8\'\'compte%20rendu%C3%A9.pdf\r\n\r\n'
        b"data\r\n--B--"
    )
    assert _parts(body, b"B") == [("file", "compte rendué.pdf", b"data")]


def test_an_extended_filename_may_name_its_language_and_is_found_outside_quoted_values_only():
    with_language = b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename*=UTF-8'fr'%C3%A9t%C3%A9.txt\r\n\r\nv\r\n--B--"
    assert _parts(with_language, b"B") == [("f", "été.txt", b"v")]
    quoted = b'--B\r\nContent-Disposition: form-data; name="f"; filename="a; filename*=UTF-8\'\'b"\r\n\r\nv\r\n--B--'
    assert _parts(quoted, b"B") == [("f", "a; filename*=UTF-8''b", b"v")]


def test_a_filename_sent_as_utf8_is_read_back():
    files = [("file", ("compte rendu é 文件.pdf", b"%PDF"))]
    body, boundary = _encode(files)
    assert _parts(body, boundary) == [("file", "compte rendu é 文件.pdf", b"%PDF")]


def test_the_number_of_parts_is_bounded():
    body = b'--B\r\nContent-Disposition: form-data; name="x"\r\n\r\nv\r\n' * 3 + b"--B--"
    assert len(list(_parts(body, b"B"))) == 3
    reader = MultipartReader(io.BytesIO(body), b"B", max_parts=2)
    with pytest.raises(MultipartError, match="more than 2 parts"):
        while reader.next_part() is not None:
            pass


@pytest.mark.parametrize(
    "body",
    [
        b'--B\r\nContent-Disposition: form-data; name="x"\r\n\r\nno closing delimiter',
        b'--B\r\nContent-Disposition: form-data; name="x"\r\n' + b"X-Long: " + b"a" * 20_000 + b"\r\n\r\nv\r\n--B--",
        b"--B\r\nContent-Type: text/plain\r\n\r\nv\r\n--B--",
        b"no boundary anywhere",
        b'--B\r\nContent-Disposition: form-data; name="x"\r\n'
        + b"".join(b"X-Long-%d: " % n + b"a" * (MAX_HEADER_BYTES // 4) + b"\r\n" for n in range(4))
        + b"\r\nv\r\n--B--",
        b"--B\r\nContent-Disposition: form-data; na",
        b"--B\r\n",
        b"x" * MAX_PREAMBLE_BYTES + b'\r\n--B\r\nContent-Disposition: form-data; name="x"\r\n\r\nv\r\n--B--',
        b'--B\r\nContent-Disposition: attachment; name="x"\r\n\r\nv\r\n--B--',
        b'--B\r\nContent-Disposition: form-data; filename="x"\r\n\r\nv\r\n--B--',
        b"--B\r\nContent-Disposition: form-data; name=\"x\"; filename*=no-such-charset''%41\r\n\r\nv\r\n--B--",
        b"--B\r\nContent-Disposition: form-data; name=\"x\"; filename*=UTF-8''%FF\r\n\r\nv\r\n--B--",
    ],
    ids=[
        "truncated",
        "huge-headers",
        "no-disposition",
        "no-boundary",
        "headers-over-the-limit-in-all",
        "truncated-in-headers",
        "no-part-after-the-first-delimiter",
        "long-preamble",
        "not-form-data",
        "no-name",
        "unknown-filename-charset",
        "filename-not-in-its-charset",
    ],
)
def test_a_malformed_body_is_refused(body):
    with pytest.raises(MultipartError):
        _parts(body, b"B")


def test_the_boundary_comes_from_the_content_type():
    assert boundary_of('multipart/form-data; boundary="a b"') == b"a b"
    assert boundary_of("multipart/form-data; charset=utf-8; boundary=xyz") == b"xyz"
    with pytest.raises(MultipartError):
        boundary_of("application/zip")
    for content_type in [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=" + "a" * 71,
    ]:
        with pytest.raises(MultipartError):
            boundary_of(content_type)


def test_a_boundary_the_parser_refuses_is_a_multipart_error():
    with pytest.raises(MultipartError):
        MultipartReader(io.BytesIO(b""), b"b" * 300)

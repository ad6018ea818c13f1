"""gateway.web.multipart against Werkzeug's parser, on bodies from two different encoders."""

from __future__ import annotations

import io

import pytest
from urllib3 import encode_multipart_formdata
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from gateway.errors import BadRequest, PayloadTooLarge
from gateway.web.multipart import FormPart, split_form_data

# Content that looks like multipart syntax must come through as bytes, untouched.
TRICKY = b"\r\n--not-the-boundary\r\n\r\nContent-Disposition: x\r\n--\x00\xff"
FILES = [
    ("file", "one.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256))),
    ("file", "zwei \u00fc\u00f1\u00ee.jpg", TRICKY),
    ("other", "ignored.txt", b"not an image"),
    ("file", "empty.gif", b""),
]


def werkzeug_body() -> tuple[bytes, str]:
    fields = {}
    for name, filename, data in FILES:
        fields.setdefault(name, []).append((io.BytesIO(data), filename))
    environ = EnvironBuilder(method="POST", data=fields).get_environ()
    return environ["wsgi.input"].read(), environ["CONTENT_TYPE"]


def urllib3_body() -> tuple[bytes, str]:
    # What `requests` sends for files=...; also another boundary style.
    return encode_multipart_formdata([(name, (fn, data)) for name, fn, data in FILES])


def werkzeug_parse(body: bytes, content_type: str) -> list[FormPart]:
    environ = EnvironBuilder(
        method="POST", input_stream=io.BytesIO(body), content_type=content_type
    ).get_environ()
    environ["CONTENT_LENGTH"] = str(len(body))
    request = Request(environ)
    try:
        files = request.files
        return [
            FormPart(name, storage.filename, storage.read())
            for name in files
            for storage in files.getlist(name)
        ]
    finally:
        request.close()


def part_order(part: FormPart) -> tuple[str, str, bytes]:
    return (part.name or "", part.filename or "", part.data)


def boundary_of(content_type: str) -> str:
    return content_type.split("boundary=", 1)[1].strip('"')


@pytest.mark.parametrize("encoder", [werkzeug_body, urllib3_body])
def test_parts_match_werkzeugs_reading(encoder) -> None:
    body, content_type = encoder()

    parts = split_form_data(body, boundary_of(content_type), max_parts=10)

    # Werkzeug's encoder groups the parts by field name: compare in a fixed order.
    expected = sorted((FormPart(name, fn, data) for name, fn, data in FILES), key=part_order)
    assert sorted(parts, key=part_order) == expected
    assert sorted(werkzeug_parse(body, content_type), key=part_order) == expected


def test_a_preamble_epilogue_padding_and_encoded_file_name_are_understood() -> None:
    body = (
        b"This is the preamble.\r\n"
        b"--XyZ  \r\n"
        b"Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''na%C3%AFve.png\r\n"
        b"Content-Type: image/png\r\n"
        b"\r\n"
        b"PNGDATA\r\n"
        b"--XyZ\r\n"
        b"\r\n"
        b"no headers at all\r\n"
        b"--XyZ--\r\n"
        b"This is the epilogue.\r\n"
    )

    assert split_form_data(body, "XyZ", max_parts=10) == [
        FormPart("file", "na\u00efve.png", b"PNGDATA"),
        FormPart(None, None, b"no headers at all"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"no boundary anywhere",
        b'--XyZ\r\nContent-Disposition: form-data; name="file"\r\n\r\ncut short',
        b'--XyZ\r\nContent-Disposition: form-data; name="file"\r\nno blank line',
        b"--XyZ garbage\r\n\r\ndata\r\n--XyZ--",
        b"--XyZ\r\nno colon here\r\n\r\ndata\r\n--XyZ--",
        b"--XyZ\r\n\r\ndata\r\n--XyZ",  # the closing delimiter lacks its "--"
    ],
)
def test_malformed_bodies_are_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest) as raised:
        split_form_data(body, "XyZ", max_parts=10)
    assert raised.value.code == "malformed_multipart"


def test_a_missing_boundary_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="boundary"):
        split_form_data(b"--\r\n\r\nx\r\n----", "", max_parts=10)


def test_parts_past_the_limit_are_refused_without_parsing_the_rest() -> None:
    body = b"".join(b"--B\r\n\r\npart\r\n" for _ in range(5)) + b"--B--"

    assert len(split_form_data(body, "B", max_parts=5)) == 5
    with pytest.raises(PayloadTooLarge) as raised:
        split_form_data(body, "B", max_parts=4)
    assert raised.value.code == "too_many_parts"

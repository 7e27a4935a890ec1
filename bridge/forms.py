"""A ``multipart/form-data`` upload parsed as it streams: one file part, its bytes handed on as
they arrive (python-multipart's push parser, never the whole body in memory or on disk)."""

from __future__ import annotations

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

# Bytes of the form's other (non-file) fields a request may carry; they are not used, only
# skipped, and a form that is mostly fields is not an upload.
MAX_FIELD_BYTES = 64 * 1024


class BadForm(ValueError):
    """The body is not a form with exactly one file part; the message says why, for users."""


def boundary_of(content_type: str) -> bytes:
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise BadForm("only multipart/form-data forms are accepted")
    boundary = params.get(b"boundary", b"")
    # RFC 2046: 1 to 70 characters.
    if not 1 <= len(boundary) <= 70:
        raise BadForm("the multipart Content-Type has no usable boundary")
    return boundary


class FileForm:
    """Feed it the body's pieces; it returns the file part's bytes found in each.

    ``filename`` is set once the file part's headers have been read, ``complete`` once the
    closing boundary has. A second file part, oversized fields or malformed framing raise
    BadForm.
    """

    def __init__(self, boundary: bytes) -> None:
        self.filename: str | None = None
        self.complete = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._in_file = False
        self._field_bytes = 0
        self._data: list[bytes] = []
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_piece,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, piece: bytes) -> list[bytes]:
        """The file bytes in ``piece`` (at most ``len(piece)`` bytes in all)."""
        if self.complete:
            return []  # the epilogue, which RFC 2046 says to ignore
        try:
            self._parser.write(piece)
        except MultipartParseError as exc:
            raise BadForm(f"malformed multipart body: {exc}") from None
        data, self._data = self._data, []
        return data

    def finish(self) -> None:
        """The body has ended: it must have been a whole form with one file part."""
        if self.filename is None:
            raise BadForm("the form has no file part (a field with a filename)")
        if not self.complete:
            raise BadForm("the multipart body ended before its closing boundary")

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_piece(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        kind, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if kind != b"form-data":
            raise BadForm("every part of the form needs Content-Disposition: form-data")
        if b"filename" not in params:
            return  # a plain field: skipped
        if self.filename is not None:
            raise BadForm("the form has more than one file part; send one file per upload")
        self.filename = params[b"filename"].decode("utf-8", "replace") or "video"
        self._in_file = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._data.append(data[start:end])
            return
        self._field_bytes += end - start
        if self._field_bytes > MAX_FIELD_BYTES:
            raise BadForm(f"the form's fields besides the file exceed {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        self._in_file = False

    def _end(self) -> None:
        self.complete = True

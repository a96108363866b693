"""How fleet v1.0.0 reads, stores and hashes a unit file, ported to Python.

fleet never stores the bytes it was given.  `fleetctl` parses the file with
go-systemd's lexer (vendor/github.com/coreos/go-systemd/unit/deserialize.go),
builds a UnitFile from the options (unit/unit.go NewUnitFile), and stores
`unit.Serialize(options)` (registry/unit.go storeOrGetUnitFile: unitModel{Raw:
u.String()}).  The unit's hash is sha1 of that serialization (unit/unit.go
UnitFile.Hash: sha1.Sum(u.Bytes())), and `list-unit-files` re-parses the stored
text before hashing it again.  So "the hash equals sha1 of the file" holds only
for files already in that canonical form, which is what unitgen promises.

Everything here is a line-for-line port so that odd inputs (comments, CRLF,
continuation lines, sections repeated or empty, long lines, bytes that are not
UTF-8) come out exactly as fleet makes them.  The lexer's "line too long" check
depends on how full Go's bufio.Reader happens to be (deserialize.go lex():
`if l.buf.Buffered() >= SYSTEMD_LINE_MAX`), so GoBufReader reproduces
bufio.Reader's fill behaviour too.  fleetunit_vectors.json holds inputs with the
results fleet v1.0.0's own code gave for them; selfcheck.sh compares.
"""

import hashlib

SYSTEMD_LINE_MAX = 2048  # deserialize.go
BUFIO_SIZE = 4096  # bufio.defaultBufSize (bufio.NewReader in deserialize.go newLexer)
UTF_MAX = 4


class UnitParseError(Exception):
    pass


# ---------------------------------------------------------------- UTF-8, Go style

# unicode.IsSpace: '\t', '\n', '\v', '\f', '\r', ' ', U+0085, U+00A0, and the
# White_Space property above Latin-1.
_SPACE_RUNES = {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029,
                0x202F, 0x205F, 0x3000} | set(range(0x2000, 0x200B))
_SPACE_ENCODINGS = sorted((chr(r).encode("utf-8") for r in _SPACE_RUNES), key=len, reverse=True)


def is_space_rune(r):
    return r in _SPACE_RUNES


def _accept(lead):
    """(needed length, lo, hi of the second byte) for a UTF-8 lead byte, as in
    unicode/utf8's first/acceptRanges tables; None for ASCII or invalid."""
    if 0xC2 <= lead <= 0xDF:
        return 2, 0x80, 0xBF
    if lead == 0xE0:
        return 3, 0xA0, 0xBF
    if 0xE1 <= lead <= 0xEC or lead in (0xEE, 0xEF):
        return 3, 0x80, 0xBF
    if lead == 0xED:
        return 3, 0x80, 0x9F
    if lead == 0xF0:
        return 4, 0x90, 0xBF
    if 0xF1 <= lead <= 0xF3:
        return 4, 0x80, 0xBF
    if lead == 0xF4:
        return 4, 0x80, 0x8F
    return None


def decode_rune(p, start, end):
    """utf8.DecodeRune(p[start:end]): (rune, size); invalid gives (0xFFFD, 1)."""
    if start >= end:
        return 0xFFFD, 0
    b0 = p[start]
    if b0 < 0x80:
        return b0, 1
    acc = _accept(b0)
    if acc is None:
        return 0xFFFD, 1
    size, lo, hi = acc
    if end - start < size:
        return 0xFFFD, 1
    b1 = p[start + 1]
    if not (lo <= b1 <= hi):
        return 0xFFFD, 1
    if size == 2:
        return ((b0 & 0x1F) << 6) | (b1 & 0x3F), 2
    b2 = p[start + 2]
    if not (0x80 <= b2 <= 0xBF):
        return 0xFFFD, 1
    if size == 3:
        return ((b0 & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F), 3
    b3 = p[start + 3]
    if not (0x80 <= b3 <= 0xBF):
        return 0xFFFD, 1
    return ((b0 & 0x07) << 18) | ((b1 & 0x3F) << 12) | ((b2 & 0x3F) << 6) | (b3 & 0x3F), 4


def full_rune(p):
    """utf8.FullRune."""
    n = len(p)
    if n == 0:
        return False
    acc = _accept(p[0])
    if acc is None:  # ASCII or invalid: a full (error) rune of width 1
        return True
    size, lo, hi = acc
    if n >= size:
        return True
    if n > 1 and not (lo <= p[1] <= hi):
        return True
    if n > 2 and not (0x80 <= p[2] <= 0xBF):
        return True
    return False


def encode_rune(r):
    """utf8.EncodeRune / bytes.Buffer.WriteRune."""
    if 0xD800 <= r <= 0xDFFF or r > 0x10FFFF:
        r = 0xFFFD
    return chr(r).encode("utf-8")


def trim_space(b):
    """bytes.TrimSpace / strings.TrimSpace (unicode.IsSpace on UTF-8 runes;
    bytes that are not valid UTF-8 are never space)."""
    start, end = 0, len(b)
    progress = True
    while progress and start < end:
        progress = False
        for enc in _SPACE_ENCODINGS:
            if b.startswith(enc, start, end):
                start += len(enc)
                progress = True
                break
    progress = True
    while progress and end > start:
        progress = False
        for enc in _SPACE_ENCODINGS:
            if end - len(enc) >= start and b[end - len(enc):end] == enc:
                end -= len(enc)
                progress = True
                break
    return bytes(b[start:end])


def rune_count(b):
    """utf8.RuneCount (text/tabwriter measures cells with it)."""
    i, n = 0, 0
    while i < len(b):
        _, size = decode_rune(b, i, len(b))
        i += size
        n += 1
    return n


# ---------------------------------------------------------------- bufio.Reader

class GoBufReader:
    """bufio.NewReader(strings.NewReader(raw)) with the methods the lexer uses."""

    def __init__(self, data):
        self.src = bytes(data)
        self.spos = 0
        self.buf = bytearray(BUFIO_SIZE)
        self.r = 0
        self.w = 0
        self.err = None  # "EOF" once strings.Reader is exhausted
        self.last_rune_size = -1

    def buffered(self):
        return self.w - self.r

    def _fill(self):
        if self.r > 0:
            n = self.w - self.r
            self.buf[0:n] = self.buf[self.r:self.w]
            self.w = n
            self.r = 0
        # strings.Reader.Read: copies what fits, (0, EOF) once nothing is left
        if self.spos >= len(self.src):
            self.err = "EOF"
            return
        chunk = self.src[self.spos:self.spos + (BUFIO_SIZE - self.w)]
        self.spos += len(chunk)
        self.buf[self.w:self.w + len(chunk)] = chunk
        self.w += len(chunk)

    def _read_err(self):
        e, self.err = self.err, None
        return e

    def read_rune(self):
        while (self.r + UTF_MAX > self.w and not full_rune(self.buf[self.r:self.w])
               and self.err is None and self.w - self.r < BUFIO_SIZE):
            self._fill()
        self.last_rune_size = -1
        if self.r == self.w:
            return None, self._read_err()
        r, size = decode_rune(self.buf, self.r, self.w)
        self.r += size
        self.last_rune_size = size
        return r, None

    def unread_rune(self):
        if self.last_rune_size < 0 or self.r < self.last_rune_size:
            raise AssertionError("bufio: invalid use of UnreadRune")
        self.r -= self.last_rune_size
        self.last_rune_size = -1

    def _read_slice(self, delim):
        s = 0
        while True:
            i = self.buf.find(delim, self.r + s, self.w)
            if i >= 0:
                line = bytes(self.buf[self.r:i + 1])
                self.r = i + 1
                err = None
                break
            if self.err is not None:
                line = bytes(self.buf[self.r:self.w])
                self.r = self.w
                err = self._read_err()
                break
            if self.buffered() >= BUFIO_SIZE:
                self.r = self.w
                line = bytes(self.buf)
                err = "FULL"
                break
            s = self.w - self.r
            self._fill()
        if line:
            self.last_rune_size = -1
        return line, err

    def read_bytes(self, delim):
        out = bytearray()
        while True:
            frag, err = self._read_slice(delim)
            out += frag
            if err != "FULL":
                return bytes(out), err

    def peek(self, n):
        self.last_rune_size = -1
        while self.w - self.r < n and self.w - self.r < BUFIO_SIZE and self.err is None:
            self._fill()
        avail = self.w - self.r
        if avail < n:
            n = avail
        return bytes(self.buf[self.r:self.r + n])


# ---------------------------------------------------------------- go-systemd lexer

def _is_comment(r):
    return r in (0x23, 0x3B)  # '#', ';'


def deserialize(data):
    """go-systemd unit.Deserialize: a list of (section, name, value) bytes
    triples, or UnitParseError with go-systemd's message."""
    rd = GoBufReader(data)
    opts = []

    def to_eol():
        line, err = rd.read_bytes(b"\n")
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.endswith(b"\n"):
            line = line[:-1]
        return line, err == "EOF"

    step = ("next_section",)
    while step is not None:
        if rd.buffered() >= SYSTEMD_LINE_MAX:
            line = rd.peek(SYSTEMD_LINE_MAX)
            if b"\r" not in line and b"\n" not in line:
                raise UnitParseError("line too long (max %d bytes)" % SYSTEMD_LINE_MAX)
        kind = step[0]
        if kind == "next_section":
            r, err = rd.read_rune()
            if r is None:
                step = None
            elif r == 0x5B:  # '['
                step = ("section_name",)
            elif _is_comment(r):
                step = ("ignore_line", ("next_section",))
            else:
                step = ("next_section",)
        elif kind == "section_name":
            sec, err = rd.read_bytes(b"]")
            if err is not None:
                raise UnitParseError("unable to find end of section")
            step = ("section_suffix", sec[:-1])
        elif kind == "section_suffix":
            garbage, _ = to_eol()
            garbage = trim_space(garbage)
            if garbage:
                # go-systemd formats l.section (never assigned, so empty) and
                # the []byte with %v, i.e. as decimal numbers.
                raise UnitParseError("found garbage after section name : [%s]"
                                     % " ".join(str(c) for c in garbage))
            step = ("section_or_option", step[1])
        elif kind == "ignore_line":
            while True:
                line, _ = to_eol()
                if line.endswith(b" "):
                    line = line[:-1]  # bytes.TrimSuffix: one space only
                if not line.endswith(b"\\"):
                    break
            step = step[1]
        elif kind == "section_or_option":
            section = step[1]
            r, err = rd.read_rune()
            if r is None:
                step = None
            elif is_space_rune(r):
                step = ("section_or_option", section)
            elif r == 0x5B:
                step = ("section_name",)
            elif _is_comment(r):
                step = ("ignore_line", ("section_or_option", section))
            else:
                rd.unread_rune()
                step = ("option_name", section)
        elif kind == "option_name":
            section = step[1]
            partial = bytearray()
            while True:
                r, err = rd.read_rune()
                if r is None:
                    raise UnitParseError(err or "EOF")  # io.EOF's text is "EOF"
                if r in (0x0A, 0x0D):
                    raise UnitParseError("unexpected newline encountered while parsing option name")
                if r == 0x3D:  # '='
                    break
                partial += encode_rune(r)
            step = ("option_value", section, trim_space(bytes(partial)), b"")
        elif kind == "option_value":
            _, section, name, partial = step
            line, eof = to_eol()
            emit = True
            if trim_space(line):
                partial = partial + line
                idx = line.rfind(b"\\")
                if idx != -1 and idx == len(line) - 1:
                    if not eof:
                        partial = partial + b"\n"
                    step = ("option_value", section, name, partial)
                    emit = False
            if emit:
                if partial.endswith(b"\n"):
                    val = trim_space(partial) + b"\n"
                else:
                    val = trim_space(partial)
                opts.append((section, name, val))
                step = ("section_or_option", section)
        else:  # pragma: no cover
            raise AssertionError(kind)
    return opts


def serialize(opts):
    """go-systemd unit.Serialize: options grouped by section in the order the
    sections were first seen, a blank line between sections."""
    if not opts:
        return b""
    order, idx = [], {}
    for sec, name, val in opts:
        if sec not in idx:
            idx[sec] = []
            order.append(sec)
        idx[sec].append((name, val))
    out = bytearray()
    for i, sec in enumerate(order):
        out += b"[" + sec + b"]\n"
        for name, val in idx[sec]:
            out += name + b"=" + val + b"\n"
        if i < len(order) - 1:
            out += b"\n"
    return bytes(out)


def _parse_multivalue_line(line):
    """unit/unit.go parseMultivalueLine (X-Fleet values only)."""
    if not (line.startswith('"') and line.endswith('"')):
        return [line]
    values, v, w = [], [], False
    for ch in line:
        if ch == '"':
            w = not w
            continue
        if ch == " " and not w:
            values.append("".join(v))
            v = []
            continue
        v.append(ch)
    values.append("".join(v))
    return values


def _s(b):
    return b.decode("utf-8", "surrogateescape")


class UnitFile:
    """unit/unit.go UnitFile: the options plus the Contents map."""

    def __init__(self, opts):
        self.options = list(opts)
        self.contents = {}
        for sec, name, val in self.options:
            sec_s, name_s, val_s = _s(sec), _s(name), _s(val)
            vals = _parse_multivalue_line(val_s) if sec_s == "X-Fleet" else [val_s]
            self.contents.setdefault(sec_s, {}).setdefault(name_s, []).extend(vals)

    @classmethod
    def parse(cls, raw):
        return cls(deserialize(raw))

    def bytes(self):
        return serialize(self.options)

    def hash(self):
        return hashlib.sha1(self.bytes()).hexdigest()

    def description(self):
        vals = self.contents.get("Unit", {}).get("Description", [])
        return vals[0] if vals else ""

    def values(self, section, name):
        return self.contents.get(section, {}).get(name, [])


def fleet_hash_of_file_bytes(raw):
    """What `list-unit-files --full` shows for a unit submitted from these bytes."""
    uf = UnitFile.parse(raw)
    return UnitFile.parse(uf.bytes()).hash()

#!/usr/bin/env python3
"""Tiny CQL native-protocol v4 client (stdlib only) used by scripts/cql-server.

    cql_probe.py HOST PORT [STATEMENT]

Sends STARTUP (expects READY, or AUTHENTICATE and then logs in), then runs
STATEMENT (default: the server's release_version from system.local) at
consistency ONE and prints the result: rows as tab-separated text, or the
result kind. Exit 0 on success, 1 on a CQL error, 2 when the server cannot be
reached, does not speak CQL, or refuses the TLS handshake or the login.

Environment (for a server with client encryption and PasswordAuthenticator):
    CQL_PROBE_CA        PEM file of the CA to verify the server against: TLS on
    CQL_PROBE_USER      user name for SASL PLAIN, when the server asks
    CQL_PROBE_PASSWORD  its password
"""
import os
import socket
import ssl
import struct
import sys

OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE = 0x00, 0x01, 0x02, 0x03
OP_QUERY, OP_RESULT, OP_AUTH_RESPONSE, OP_AUTH_SUCCESS = 0x07, 0x08, 0x0F, 0x10


def frame(stream, opcode, body):
    return struct.pack(">BBhBi", 0x04, 0, stream, opcode, len(body)) + body


def string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by server")
        buf += chunk
    return buf


def read_frame(sock):
    version, _flags, _stream, opcode, length = struct.unpack(">BBhBi", recv_exact(sock, 9))
    if version & 0x7F != 0x04:
        raise ConnectionError("unexpected protocol version 0x%02x" % version)
    return opcode, recv_exact(sock, length)


class Reader:
    def __init__(self, data):
        self.d, self.i = data, 0

    def take(self, n):
        v = self.d[self.i:self.i + n]
        self.i += n
        return v

    def int(self):
        return struct.unpack(">i", self.take(4))[0]

    def short(self):
        return struct.unpack(">H", self.take(2))[0]

    def string(self):
        return self.take(self.short()).decode()

    def bytes(self):
        n = self.int()
        return None if n < 0 else self.take(n)

    def option(self):
        kind = self.short()
        if kind == 0x0000:          # custom
            self.string()
        elif kind in (0x0020, 0x0022):  # list, set
            self.option()
        elif kind == 0x0021:        # map
            self.option(); self.option()
        elif kind == 0x0030:        # UDT
            self.string(); self.string()
            for _ in range(self.short()):
                self.string(); self.option()
        elif kind == 0x0031:        # tuple
            for _ in range(self.short()):
                self.option()
        return kind


def show(kind, raw):
    if raw is None:
        return "null"
    if kind in (0x0001, 0x000A, 0x000D):  # ascii, text, varchar
        return raw.decode(errors="replace")
    if kind in (0x0002, 0x0009, 0x0013, 0x0014) and len(raw) in (1, 2, 4, 8):  # ints
        return str(int.from_bytes(raw, "big", signed=True))
    if kind == 0x0004:
        return "true" if raw != b"\x00" else "false"
    return "0x" + raw.hex()


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    stmt = sys.argv[3] if len(sys.argv) > 3 else "SELECT release_version FROM system.local"
    ca = os.environ.get("CQL_PROBE_CA")
    try:
        sock = socket.create_connection((host, port), timeout=10)
        if ca:
            context = ssl.create_default_context(cafile=ca)
            sock = context.wrap_socket(sock, server_hostname=host)
        sock.sendall(frame(1, OP_STARTUP, struct.pack(">H", 1) + string("CQL_VERSION") + string("3.0.0")))
        opcode, body = read_frame(sock)
        if opcode == OP_AUTHENTICATE:
            user = os.environ.get("CQL_PROBE_USER", "")
            password = os.environ.get("CQL_PROBE_PASSWORD", "")
            token = b"\0" + user.encode() + b"\0" + password.encode()
            sock.sendall(frame(1, OP_AUTH_RESPONSE, struct.pack(">i", len(token)) + token))
            opcode, body = read_frame(sock)
            if opcode == OP_ERROR:
                r = Reader(body)
                code = r.int()
                print("login refused (0x%04x): %s" % (code, r.string()), file=sys.stderr)
                return 2
            if opcode != OP_AUTH_SUCCESS:
                print("no AUTH_SUCCESS to AUTH_RESPONSE (opcode 0x%02x)" % opcode, file=sys.stderr)
                return 2
        elif opcode != OP_READY:
            print("no READY to STARTUP (opcode 0x%02x)" % opcode, file=sys.stderr)
            return 2
    except (OSError, ConnectionError, struct.error) as e:
        print("cannot reach CQL server at %s:%d: %s" % (host, port, e), file=sys.stderr)
        return 2

    q = stmt.encode()
    sock.sendall(frame(2, OP_QUERY, struct.pack(">i", len(q)) + q + struct.pack(">HB", 0x0001, 0x00)))
    sock.settimeout(60)
    opcode, body = read_frame(sock)
    r = Reader(body)
    if opcode == OP_ERROR:
        code = r.int()
        print("CQL error 0x%04x: %s" % (code, r.string()), file=sys.stderr)
        return 1
    if opcode != OP_RESULT:
        print("unexpected opcode 0x%02x" % opcode, file=sys.stderr)
        return 2
    kind = r.int()
    if kind != 2:  # 1 void, 3 set_keyspace, 4 prepared, 5 schema_change
        print({1: "OK", 3: "OK (use keyspace)", 5: "OK (schema change)"}.get(kind, "OK (kind %d)" % kind))
        return 0
    flags, ncols = r.int(), r.int()
    if flags & 0x0002:
        r.bytes()  # paging state
    types = []
    if not flags & 0x0004:
        if flags & 0x0001:
            r.string(); r.string()
        for _ in range(ncols):
            if not flags & 0x0001:
                r.string(); r.string()
            r.string()
            types.append(r.option())
    else:
        types = [None] * ncols
    for _ in range(r.int()):
        print("\t".join(show(t, r.bytes()) for t in types))
    return 0


if __name__ == "__main__":
    sys.exit(main())

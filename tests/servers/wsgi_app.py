# SPDX-License-Identifier: MIT
"""The WSGI application tests/integration/server_gunicorn.sh runs under
gunicorn: answers that a client can check without trusting the server.

  GET  /blob/N  N bytes, a function of N alone (see blob below)
  POST /echo    the sha256 of the request body, in hex, and a newline
  GET  /pid     the worker's process id, to see which worker answered
"""
import hashlib
import os


def blob(size):
    """size bytes: the hex sha256 of the decimal size, repeated."""
    unit = hashlib.sha256(str(size).encode()).hexdigest().encode()
    return (unit * (size // len(unit) + 1))[:size]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/blob/"):
        body = blob(int(path[len("/blob/"):]))
    elif path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = hashlib.sha256(environ["wsgi.input"].read(length)).hexdigest().encode() + b"\n"
    elif path == "/pid":
        body = b"%d\n" % os.getpid()
    else:
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    # python3 wsgi_app.py N: what /blob/N answers, for the test to compare.
    import sys
    sys.stdout.buffer.write(blob(int(sys.argv[1])))

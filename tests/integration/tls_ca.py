"""A throwaway CA for the TLS tests, made with openssl on the controller: one CA, one node
certificate (server and client use, so Ray's mutual TLS accepts it) naming the given IPs."""

import subprocess
from pathlib import Path


def make_ca(directory, ips):
    """{ca, cert, key}: PEM texts (EC P-256, valid one day) in `directory`."""
    d = Path(directory)
    ext = d / "node.ext"
    ext.write_text("subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n" % ",".join("IP:%s" % ip for ip in ips))
    for argv in (
        ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
         "-subj", "/CN=sglang-ops test CA", "-keyout", "ca.key", "-out", "ca.pem"],
        ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=sglang-ops node",
         "-keyout", "node.key", "-out", "node.csr"],
        ["x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
         "-extfile", "node.ext", "-out", "node.pem"],
    ):
        subprocess.run(["openssl"] + argv, cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"ca": (d / "ca.pem").read_text(), "cert": (d / "node.pem").read_text(), "key": (d / "node.key").read_text()}


def key_body(pem):
    """The longest line of a PEM key: a string that appears nowhere unless the key leaked."""
    return max(pem.splitlines(), key=len)

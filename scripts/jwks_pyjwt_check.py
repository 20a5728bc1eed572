#!/usr/bin/env python3
"""Checks fraise-auth's EdDSA and RS256 tokens with PyJWT, an implementation that shares no code
with ours: for each algorithm, start a server (fresh data folder, loopback port), register, fetch
/.well-known/jwks.json, verify the access token with the published key only; then `keys rotate`,
restart, and check that the old token still verifies against the new JWKS while new tokens name
the new kid.

Needs `pip install pyjwt cryptography`. Usage: scripts/jwks_pyjwt_check.py [path/to/fraise-auth]
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import jwt  # PyJWT

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/fraise-auth"
PORT = 18131


def env_for(data_dir, alg):
    return dict(os.environ, DATA_DIR=data_dir, PORT=str(PORT), JWT_ALGORITHM=alg, LOG_LEVEL="warn",
                JWT_SECRET_KEY="pyjwt-check-secret-0123456789-pyjwt-check", ENABLE_RATE_LIMITING="false",
                ARGON2_MEMORY_COST="8192", ARGON2_TIME_COST="1", ARGON2_PARALLELISM="1")


def call(path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", method="POST" if body else "GET",
                                 data=json.dumps(body).encode() if body else None,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.load(res), res.headers


def serve(env):
    proc = subprocess.Popen([BIN, "serve"], env=env)
    for _ in range(200):
        try:
            call("/health/ready")
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("server did not become ready")


def verify(token, jwks, alg):
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    key = jwt.PyJWK(jwk).key
    return jwt.decode(token, key, algorithms=[alg], options={"verify_aud": False})


def check(alg):
    with tempfile.TemporaryDirectory() as data:
        env = env_for(data, alg)
        proc = serve(env)
        try:
            reg, _ = call("/auth/register", {"email": "py@example.com", "password": "TestPass123!"})
            jwks, headers = call("/.well-known/jwks.json")
            assert headers["cache-control"] == "public, max-age=300", headers
            claims = verify(reg["access_token"], jwks, alg)
            assert claims["sub"] == reg["user"]["id"] and claims["type"] == "access", claims
            h, _, s = reg["access_token"].split(".")
            forged = base64.urlsafe_b64encode(json.dumps(dict(claims, roles=["admin"])).encode()).rstrip(b"=")
            try:  # the same signature over other claims must fail in PyJWT too
                verify(f"{h}.{forged.decode()}.{s}", jwks, alg)
                sys.exit(f"{alg}: tampered token verified")
            except jwt.InvalidSignatureError:
                pass
        finally:
            proc.terminate()
            proc.wait()
        out = subprocess.run([BIN, "keys", "rotate"], env=env, check=True, capture_output=True, text=True).stdout
        old_kid, new_kid = (line.split()[1] for line in out.splitlines())
        proc = serve(env)
        try:
            jwks, _ = call("/.well-known/jwks.json")
            assert {k["kid"] for k in jwks["keys"]} == {old_kid, new_kid}, jwks
            verify(reg["access_token"], jwks, alg)  # signed before the rotation
            login, _ = call("/auth/login", {"email": "py@example.com", "password": "TestPass123!"})
            assert jwt.get_unverified_header(login["access_token"])["kid"] == new_kid
            verify(login["access_token"], jwks, alg)
        finally:
            proc.terminate()
            proc.wait()
        print(f"✅ {alg}: PyJWT {jwt.__version__} verifies our tokens with the JWKS, before and after a rotation")


for alg in ("EdDSA", "RS256"):
    check(alg)

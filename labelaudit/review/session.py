"""The review in a browser: a session over one audit's draw, saved to ``AUDIT/review.csv`` after every
answer, and a local HTTP server for the page (page.py).

``ReviewSession`` owns the draw and the answers. The first session of an audit draws ``n`` samples
(noise/sampling.py, the worksheet's rows and columns) and writes review.csv at once; every answer, change
and undo rewrites it atomically (write to a temporary file, fsync, rename), so closing the tab or
killing the process loses nothing, and the next session over the audit resumes from the file. The
file is a worksheet: ``labelaudit review AUDIT --answers AUDIT/review.csv`` applies it too.

``serve`` answers on 127.0.0.1 only, on a random port unless one is given, and every request must
carry the session's random token (in the page's address), so no other page or user of the machine
can read the images or answer for the reviewer.
"""
from __future__ import annotations

import io
import json
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd

from ..atomic import write_text_atomic
from ..audit.read import Audit
from ..errors import DataError, UsageError
from ..noise.stratified import domain_rate
from .apply import NONE, Applied, class_index, outcomes, scan_audit
from .worksheet import COLUMNS, apply_answers, audit_design, check_answers, worksheet_rows

REVIEW_CSV = "review.csv"
EXAMPLES = 4  # images shown of each candidate class: its least suspicious samples
COMMAND_KEYS = {"y", "x", "s"}  # confirm, none of the classes, skip
MAX_SIDE = 512  # images are sent at most this large (the page scales small ones up)


def class_keys(classes: list[str]) -> dict[str, str]:
    """The key that picks each class: 1–9, 0, then the letters the commands leave free."""
    keys = [*"1234567890", *(c for c in "abcdefghijklmnopqrstuvwxyz" if c not in COMMAND_KEYS)]
    return {name: key for name, key in zip(classes, keys)}


class ReviewSession:
    """The draw of one audit and its answers, kept in ``AUDIT/review.csv``."""

    def __init__(self, audit: Audit, n: int = 200, seed: int = 0):
        self.audit = audit
        self.path = Path(audit.path) / REVIEW_CSV
        self.base = scan_audit(audit)
        self.classes = class_index(self.base)[0]
        self._lock = threading.Lock()
        if self.path.exists():
            try:
                table = pd.read_csv(self.path, dtype=str, keep_default_na=False)
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                raise DataError(f"{self.path}: cannot read it ({str(exc).splitlines()[0]}); move it away to start "
                                "a new review (its answers stay in it)") from None
            if list(table.columns[:len(COLUMNS)]) != COLUMNS:
                raise DataError(f"{self.path}: not a review file of labelaudit (columns {', '.join(table.columns)}); "
                                "move it away to start a new review")
            if (table["label"].str.strip() != "").any():
                check_answers(audit, table, str(self.path))  # stale draw, unknown sample or class: one line
            self.resumed = True
        else:
            table = worksheet_rows(audit, n, seed).astype({"sample_id": str, "stratum": str, "inclusion": str})
            self.resumed = False
        self.table = table.reset_index(drop=True)
        self._rows = {sid: i for i, sid in enumerate(self.table["sample_id"])}
        self._row_of = pd.Index(self.base.samples["sample_id"].astype(str))  # sample id → row in the audit, once
        self._audit_rows = self._row_of.get_indexer(self.table["sample_id"])  # each drawn sample's audit row
        self._examples = self._least_suspicious()
        self._design = audit_design(audit)
        self.applied_answers = -1
        if not self.resumed:
            self._save()

    # --- answers
    def answer(self, sample_id: str, label: str) -> dict:
        """Record ``label`` (a class, ``none``, or "" to clear) for a drawn sample; saved at once."""
        sample_id, label = str(sample_id), str(label).strip()
        if sample_id not in self._rows:
            raise UsageError(f"sample {sample_id}: not in this review's draw")
        if label and label not in self.classes and label.lower() != NONE:
            raise UsageError(f"{label!r}: not a class of the audit nor {NONE!r}")
        with self._lock:
            self.table.loc[self._rows[sample_id], "label"] = NONE if label.lower() == NONE and NONE not in self.classes \
                else label
            self._save()
        return self.state(items=False)

    def _save(self) -> None:
        write_text_atomic(self.path, self.table.to_csv(index=False))

    def answers(self) -> pd.DataFrame:
        """The answered rows as ``row`` (in the audit), ``label``."""
        done = (self.table["label"] != "").to_numpy()
        return pd.DataFrame({"row": self._audit_rows[done], "label": self.table["label"].to_numpy()[done]})

    @property
    def n_answered(self) -> int:
        return int((self.table["label"] != "").sum())

    def estimate(self) -> dict | None:
        """The live estimate of the dataset's rate from the answers so far (None before the first)."""
        given = self.answers()
        if given.empty:
            return None
        wrong, _ = outcomes(self.base, given)
        e = domain_rate(self._design, given["row"].to_numpy(), wrong)  # the dataset's rate alone: every key press
        return {"value": e.value, "low": e.low, "high": e.high, "n": int(len(given))}

    def apply(self) -> Applied:
        """Apply the answers so far to the audit (apply.py); DataError before the first."""
        given = self.answers()
        if given.empty:
            raise DataError(f"{self.path}: no answer yet; answer a few samples first")
        with self._lock:
            applied = apply_answers(self.audit, given, self.path)
            self.applied_answers = len(given)
        return applied

    # --- what the page shows
    def state(self, items: bool = True) -> dict:
        out = {"answered": self.n_answered, "total": int(len(self.table)), "estimate": self.estimate(),
               "unsupervised": self.base.summary.noise_rate}
        if items:
            rows = self.base.samples.iloc[self._audit_rows]
            out.update(classes=self.classes, keys=class_keys(self.classes), examples=self._examples,
                       items=[{"sample_id": sid, "given": g, "suggested": p, "label": a}
                              for sid, g, p, a in zip(self.table["sample_id"], rows["given_label"].astype(str),
                                                      rows["predicted_label"].astype(str), self.table["label"])])
        return out

    def _least_suspicious(self) -> dict[str, list[str]]:
        """For each class, the sample ids of its least suspicious samples (the bottom of the ranking)."""
        s = self.base.samples.sort_values("rank", ascending=False, kind="stable")
        return {c: s.loc[s["given_label"].astype(str) == c, "sample_id"].astype(str).head(EXAMPLES).tolist()
                for c in self.classes}

    def image(self, sample_id: str) -> bytes:
        """The sample's image as PNG, at most MAX_SIDE on its longer side."""
        from PIL import Image

        row = self._row_of.get_indexer([str(sample_id)])[0]
        if row < 0:
            raise KeyError(sample_id)
        with Image.open(self.base.file_of(str(self.base.samples["path"].iloc[row]))) as im:
            im = im.convert("RGB")
            im.thumbnail((MAX_SIDE, MAX_SIDE))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
        return buf.getvalue()


def serve(session: ReviewSession, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """An HTTP server for the page on 127.0.0.1 (not started: call ``serve_forever``), and the page's
    address with the session's token."""
    from .page import page_html

    token = secrets.token_urlsafe(16)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # the CLI prints; the library never does
            pass

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj, status: int = HTTPStatus.OK) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def _allowed(self) -> tuple[bool, str, dict]:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            return query.get("t", [""])[0] == token, url.path, query

        def do_GET(self):
            ok, path, query = self._allowed()
            if not ok:
                return self._send(HTTPStatus.FORBIDDEN, b"open the address labelaudit review printed", "text/plain")
            if path == "/":
                return self._send(HTTPStatus.OK, page_html(token).encode(), "text/html; charset=utf-8")
            if path == "/api/state":
                return self._json(session.state())
            if path == "/image":
                try:
                    return self._send(HTTPStatus.OK, session.image(query.get("id", [""])[0]), "image/png")
                except (KeyError, OSError):
                    return self._send(HTTPStatus.NOT_FOUND, b"no such image", "text/plain")
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

        def do_POST(self):
            ok, path, _ = self._allowed()
            if not ok:
                return self._send(HTTPStatus.FORBIDDEN, b"forbidden", "text/plain")
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if path == "/api/answer":
                    return self._json(session.answer(body["sample_id"], body.get("label", "")))
                if path == "/api/apply":
                    applied = session.apply()
                    return self._json({"applied": applied.estimates.rate.n_answers,
                                       "n_flagged": applied.n_flagged, **session.state(items=False)})
            except (UsageError, DataError, KeyError, ValueError) as exc:
                return self._json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server, f"http://127.0.0.1:{server.server_address[1]}/?t={token}"

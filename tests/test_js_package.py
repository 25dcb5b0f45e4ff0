"""The js-libp2p package of the live dialect (js/): its own suite, `npm test`, which starts
real daemons and a relay with this interpreter (`npm ci` in js/ first)."""

from __future__ import annotations

import os
import re
import shutil
import sys

from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from .processes import ROOT, environment

JS = os.path.join(ROOT, "js")
NODE = shutil.which("node")
NPM = shutil.which("npm")


def js_missing() -> str | None:
    """Why js/ cannot be tested here (a skip reason), or None."""
    if NODE is None or NPM is None:
        return "node or npm is not installed"
    if not os.path.isdir(os.path.join(JS, "node_modules")):
        return "js/node_modules is missing: run `npm ci` in js/"
    return None


class JsPackageTests(TestCase):
    timeout = 300
    skip = js_missing()

    @inlineCallbacks
    def test_npm_test(self):  # type: ignore[no-untyped-def]
        """`npm test` in js/: the codec, the service over fakes, and the service against
        real daemons and a relay all pass."""
        assert NPM is not None
        env = environment()
        env["RENDEZVOUS_PYTHON"] = sys.executable
        env["NO_COLOR"] = "1"
        out, err, code = yield getProcessOutputAndValue(NPM, ["test", "--silent"], env=env, path=JS)
        output = (out + err).decode(errors="replace")
        self.assertEqual(code, 0, output)
        passed = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
        failed = re.search(r"^# fail (\d+)$", output, re.MULTILINE)
        self.assertTrue(passed and failed, output)
        assert passed is not None and failed is not None
        self.assertEqual(failed.group(1), "0", output)
        self.assertGreater(int(passed.group(1)), 0, output)

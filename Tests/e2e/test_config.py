"""config.example.json documents every key the loader reads, and check-config accepts it."""

import re
import subprocess

from conftest import MAILER, ROOT


def test_example_documents_every_key_and_checks_clean():
    source = (ROOT / "Sources/IPC/Config/ConfigLoader.swift").read_text()
    keys = set(re.findall(r"\.(?:string|bool|int|object|objects|strings)\(\"(\w+)\"", source))
    assert len(keys) > 50
    example = (ROOT / "config.example.json").read_text()
    missing = sorted(k for k in keys if f'"{k}"' not in example)
    assert missing == [], f"undocumented keys: {missing}"
    r = subprocess.run([str(MAILER), "check-config", "-config", str(ROOT / "config.example.json")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "unknown configuration key" not in r.stdout


def test_syntax_error_names_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "smtpPort": 25\n  "batchSize": 10\n}\n')
    r = subprocess.run([str(MAILER), "check-config", "-config", str(bad)], capture_output=True, text=True)
    assert r.returncode == 78
    assert "line 3" in r.stderr and "expected ','" in r.stderr


def test_environment_overrides_and_errors(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"forwardSMTP": false}')
    env = {"PATH": "/usr/bin:/bin", "FORWARD_SMTP": "true", "FORWARD_HOST": "smtp.example.com", "SMTP_PORT": "2600"}
    r = subprocess.run([str(MAILER), "check-config", "-config", str(cfg)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "127.0.0.1:2600" in r.stdout and "1 provider" in r.stdout
    env["SMTP_PORT"] = "many"
    r = subprocess.run([str(MAILER), "check-config", "-config", str(cfg)], capture_output=True, text=True, env=env)
    assert r.returncode == 78 and "SMTP_PORT" in r.stderr

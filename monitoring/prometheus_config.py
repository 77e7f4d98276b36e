"""Local copies of the shipped Prometheus configuration, for ``make run`` and the live tests.

The shipped ``prometheus/prometheus.yml`` discovers the compose services through DNS. A local
copy keeps every job, rule and setting, and only rewrites each job's targets to local
addresses (and, for tests, the scrape interval and the alerts' ``for:`` durations).
"""

from __future__ import annotations

from pathlib import Path

import yaml

SHIPPED = Path(__file__).resolve().parents[1] / "prometheus"
CONFIG_FILE = "prometheus.yml"
RULES_FILE = "alerts.yml"


def write_local_config(out_dir: Path, targets: dict[str, list[str]], *, scrape_interval: str | None = None,
                       alert_for: str | None = None) -> Path:
    """Write ``prometheus.yml`` and ``alerts.yml`` into ``out_dir``; returns the config path.

    ``targets`` maps every job name of the shipped config to its local ``host:port`` targets.
    """
    config = yaml.safe_load((SHIPPED / CONFIG_FILE).read_text())
    for job in config["scrape_configs"]:
        for key in [k for k in job if k.endswith("_sd_configs") or k == "static_configs"]:
            del job[key]
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    if scrape_interval:
        config["global"].update(scrape_interval=scrape_interval, scrape_timeout=scrape_interval,
                                evaluation_interval=scrape_interval)
    config["rule_files"] = [RULES_FILE]
    write_rules(out_dir, alert_for=alert_for)
    (out_dir / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    return out_dir / CONFIG_FILE


def write_rules(out_dir: Path, *, alert_for: str | None = None) -> Path:
    """Write the shipped ``alerts.yml`` into ``out_dir``, every ``for:`` set to ``alert_for`` if given."""
    rules = yaml.safe_load((SHIPPED / RULES_FILE).read_text())
    if alert_for:
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = alert_for
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RULES_FILE).write_text(yaml.safe_dump(rules, sort_keys=False))
    return out_dir / RULES_FILE

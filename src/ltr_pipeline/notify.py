"""Notifications of a run's outcome: success (published), rejection (champion kept), failure.

Always to the log; to a Slack-compatible webhook when LTR_NOTIFY_WEBHOOK_URL is set; by e-mail over SMTP when
LTR_NOTIFY_EMAIL_TO is set. A notifier that fails is logged and never fails the run it reports on.
"""

from __future__ import annotations

import smtplib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx
import structlog

from ltr_pipeline.config import Settings
from ltr_pipeline.record import RunReport

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Notice:
    level: str  # success | rejected | failure
    title: str
    text: str
    details: dict[str, Any] = field(default_factory=dict)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def notice_for_report(report: RunReport) -> Notice:
    m = report.metrics
    new, champion, legacy = m.new, m.champion, m.legacy
    figures = (f"logged nDCG@5 {_fmt(new.ndcg_at_5)} (champion {_fmt(champion.ndcg_at_5 if champion else None)}, "
               f"legacy {_fmt(legacy.ndcg_at_5)}), fairness gap {_fmt(new.fairness_gap)}, "
               f"p95 {_fmt(new.latency_p95_ms)} ms")
    d = m.debiased
    if d is not None and d.difference is not None:
        figures += (f", debiased nDCG@5 vs champion {d.difference:+.4f} [{d.low:+.4f}, {d.high:+.4f}] "
                    f"({d.queries} cases)")
    figures += _interleaving_line(report)
    details = {"run_date": report.run_date, "decision": report.decision,
               "published_version": report.published_version, "live_version": report.live_version,
               "run_dir": report.run_dir}
    run_date = report.run_date
    if report.decision == "published":
        return Notice("success", f"LTR {run_date}: published {report.published_version}", figures, details)
    if report.decision == "rejected":
        reasons = "; ".join(report.gate.reasons)
        return Notice("rejected", f"LTR {run_date}: model rejected, {report.live_version or 'legacy'} stays",
                      f"{reasons}. {figures}", details)
    return notice_for_failure(run_date, f"publishing failed: {report.publish_error}", details=details)


def _interleaving_line(report: RunReport) -> str:
    """The day's interleaving verdict (and a promotion it caused), for the notice's figures."""
    promotion = report.promotion
    if promotion is None or promotion.verdict is None:
        return ""
    v = promotion.verdict
    line = (f". Interleaving {v.live_version} vs {v.challenger_version}: challenger won {v.wins}, lost {v.losses}, "
            f"tied {v.ties}; share {_fmt(v.share)} [{v.low:.3f}, {v.high:.3f}]: {v.preferred}")
    return line + (f"; promoted {promotion.promoted_version}" if promotion.promoted_version else "")


def notice_for_failure(run_date: Any, error: str, task: str | None = None,
                       details: dict[str, Any] | None = None) -> Notice:
    where = f" in {task}" if task else ""
    return Notice("failure", f"LTR {run_date}: run failed{where}", f"{error}. The live model is unchanged.",
                  {"run_date": str(run_date), "task": task, **(details or {})})


class Notifier(ABC):
    name: str

    @abstractmethod
    def send(self, notice: Notice) -> None: ...


class LogNotifier(Notifier):
    name = "log"

    def send(self, notice: Notice) -> None:
        level = {"success": log.info, "rejected": log.warning}.get(notice.level, log.error)
        level("notify", level_name=notice.level, title=notice.title, text=notice.text, **notice.details)


class WebhookNotifier(Notifier):
    name = "webhook"

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout

    def send(self, notice: Notice) -> None:
        payload = {"text": f"*{notice.title}*\n{notice.text}", "level": notice.level, "details": notice.details}
        try:
            httpx.post(self.url, json=payload, timeout=self.timeout).raise_for_status()
        except httpx.HTTPError as exc:  # the URL is a secret: never let it reach the log through the error
            status = getattr(getattr(exc, "response", None), "status_code", None)
            raise RuntimeError(f"webhook failed: {type(exc).__name__}{f' (HTTP {status})' if status else ''}") from None


class EmailNotifier(Notifier):
    name = "email"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.to = [a.strip() for a in (settings.notify_email_to or "").split(",") if a.strip()]

    def send(self, notice: Notice) -> None:
        s = self.settings
        message = EmailMessage()
        message["Subject"] = f"[{notice.level}] {notice.title}"
        message["From"], message["To"] = s.smtp_from, ", ".join(self.to)
        message.set_content(notice.text + "\n\n" + "\n".join(f"{k}: {v}" for k, v in notice.details.items()))
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.notify_timeout_seconds) as smtp:
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_user and s.smtp_password:
                smtp.login(s.smtp_user, s.smtp_password.get_secret_value())
            smtp.send_message(message)


def notifiers(settings: Settings) -> list[Notifier]:
    out: list[Notifier] = [LogNotifier()]
    if settings.notify_webhook_url:
        out.append(WebhookNotifier(settings.notify_webhook_url.get_secret_value(), settings.notify_timeout_seconds))
    if settings.notify_email_to:
        out.append(EmailNotifier(settings))
    return out


def notify(settings: Settings, notice: Notice) -> dict[str, str]:
    """Send `notice` everywhere configured; returns each notifier's outcome ('sent' or the error)."""
    outcomes = {}
    for notifier in notifiers(settings):
        try:
            notifier.send(notice)
            outcomes[notifier.name] = "sent"
        except Exception as exc:
            outcomes[notifier.name] = f"{type(exc).__name__}: {exc}"
            log.error("notify.failed", notifier=notifier.name, error=str(exc))
    return outcomes

//! Emailing the run report over SMTP (lettre). STARTTLS by default, implicit TLS or plain SMTP when configured;
//! credentials only from secret references. A failed send never touches the lake's data: the caller logs it and
//! reflects it in the exit code, and the report is still in the lake.
use super::RunReport;
use crate::config::environment::SmtpTls;
use crate::config::EmailConfig;
use crate::{Error, Result};
use lettre::message::{header::ContentType, Attachment, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Sends `report` unless email is disabled or only failures are wanted and there are none. Returns whether a
/// message was sent.
pub async fn send(cfg: &EmailConfig, report: &RunReport) -> Result<bool> {
    if !cfg.enabled || (cfg.only_on_failure && report.collections_failed == 0) {
        return Ok(false);
    }
    let mut builder = Message::builder()
        .from(cfg.from.parse().map_err(|e| Error::Email(format!("[email] from `{}`: {e}", cfg.from)))?)
        .subject(report.subject());
    for to in &cfg.to {
        builder = builder.to(to.parse().map_err(|e| Error::Email(format!("[email] to `{to}`: {e}")))?);
    }
    let text = report.to_text();
    let html = format!("<html><body><pre style=\"font-family:monospace\">{}</pre></body></html>", html_escape(&text));
    let json = serde_json::to_string_pretty(report).expect("serialisable");
    let body = MultiPart::mixed()
        .multipart(MultiPart::alternative().singlepart(SinglePart::plain(text)).singlepart(SinglePart::html(html)))
        .singlepart(
            Attachment::new(format!("{}.json", report.run_id))
                .body(json, ContentType::parse("application/json").expect("valid")),
        );
    let message = builder.multipart(body).map_err(|e| Error::Email(e.to_string()))?;

    let mut transport = match cfg.tls {
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.smtp_host),
        SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.smtp_host),
        SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.smtp_host)),
    }
    .map_err(|e| Error::Email(format!("{}:{}: {e}", cfg.smtp_host, cfg.smtp_port)))?
    .port(cfg.smtp_port)
    .timeout(Some(std::time::Duration::from_secs(30)));
    if let Some(user) = &cfg.username {
        let user = user.resolve("[email] username")?;
        let pass = match &cfg.password {
            Some(p) => p.resolve("[email] password")?,
            None => String::new(),
        };
        transport = transport.credentials(Credentials::new(user, pass));
    }
    transport
        .build()
        .send(message)
        .await
        .map_err(|e| Error::Email(format!("sending via {}:{}: {e}", cfg.smtp_host, cfg.smtp_port)))?;
    Ok(true)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

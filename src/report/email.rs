//! Emailing the run report over SMTP (lettre). STARTTLS by default, implicit TLS (`tls = "tls"`), plain SMTP
//! only when written as `tls = "none"`; a private CA (`tls_ca_file`) is trusted in addition to the system
//! roots; credentials only from secret references. A failed send never touches the lake's data: the caller
//! logs it and reflects it in the exit code, and the report is still in the lake.
use super::RunReport;
use crate::config::environment::SmtpTls;
use crate::config::EmailConfig;
use crate::{Error, Result};
use lettre::message::{header::ContentType, Attachment, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
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
    let alternative = MultiPart::alternative()
        .singlepart(SinglePart::plain(report.to_text()))
        .singlepart(SinglePart::html(report.to_html()));
    let message = if cfg.attach_json {
        let json = serde_json::to_string_pretty(report).expect("serialisable");
        builder.multipart(
            MultiPart::mixed().multipart(alternative).singlepart(
                Attachment::new(format!("{}.json", report.run_id))
                    .body(json, ContentType::parse("application/json").expect("valid")),
            ),
        )
    } else {
        builder.multipart(alternative)
    }
    .map_err(|e| Error::Email(e.to_string()))?;
    // lettre bounds each command; this bounds the whole exchange (a server that never answers AUTH, say).
    match tokio::time::timeout(cfg.timeout * 4, transport(cfg)?.send(message)).await {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) => Err(Error::Email(format!("sending via {}:{}: {}", cfg.smtp_host, cfg.smtp_port, chain(&e)))),
        Err(_) => Err(Error::Email(format!(
            "sending via {}:{}: no answer within {}s ([email] timeout_seconds x 4)",
            cfg.smtp_host,
            cfg.smtp_port,
            (cfg.timeout * 4).as_secs()
        ))),
    }
}

/// Connects, negotiates TLS, authenticates and says NOOP, sending no mail (`mongolake check`).
pub async fn test_connection(cfg: &EmailConfig) -> Result<()> {
    match tokio::time::timeout(cfg.timeout * 4, transport(cfg)?.test_connection()).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(Error::Email(format!("{}:{} did not answer NOOP", cfg.smtp_host, cfg.smtp_port))),
        Ok(Err(e)) => Err(Error::Email(format!("{}:{}: {}", cfg.smtp_host, cfg.smtp_port, chain(&e)))),
        Err(_) => Err(Error::Email(format!(
            "{}:{}: no answer within {}s",
            cfg.smtp_host,
            cfg.smtp_port,
            (cfg.timeout * 4).as_secs()
        ))),
    }
}

/// lettre's message plus its causes (the TLS or I/O reason is in the source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(&format!(": {t}"));
        }
        cur = c.source();
    }
    s
}

fn transport(cfg: &EmailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>> {
    let where_ = format!("{}:{}", cfg.smtp_host, cfg.smtp_port);
    let tls = match cfg.tls {
        SmtpTls::None => Tls::None,
        mode => {
            let mut params = TlsParameters::builder(cfg.smtp_host.clone());
            if let Some(path) = &cfg.tls_ca_file {
                let pem =
                    std::fs::read(path).map_err(|e| Error::io(format!("[email] tls_ca_file {}", path.display()), e))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| Error::Email(format!("[email] tls_ca_file {}: {e}", path.display())))?;
                params = params.add_root_certificate(cert);
            }
            let params = params.build_rustls().map_err(|e| Error::Email(format!("{where_}: TLS setup: {e}")))?;
            if mode == SmtpTls::Implicit {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            }
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.smtp_host)
        .port(cfg.smtp_port)
        .tls(tls)
        .timeout(Some(cfg.timeout));
    if let Some(user) = &cfg.username {
        let user = user.resolve("[email] username")?;
        let pass = match &cfg.password {
            Some(p) => p.resolve("[email] password")?,
            None => String::new(),
        };
        builder = builder.credentials(Credentials::new(user, pass));
    }
    Ok(builder.build())
}

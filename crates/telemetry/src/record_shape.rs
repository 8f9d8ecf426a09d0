//! How log record fields are written where KumoMTA's shape differs from
//! the Rust type: enhanced status codes as objects, times as Unix seconds.
//! Reading accepts both forms, so `petrel logs` reads older segments too.

/// `"5.1.1"` ⇄ `{"class": 5, "subject": 1, "detail": 1}`.
pub(crate) mod enhanced_code {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Parts {
        class: u8,
        subject: u16,
        detail: u16,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Parts(Parts),
        Text(String),
    }

    fn parts(text: &str) -> Option<Parts> {
        let mut it = text.split('.').map(|p| p.parse::<u16>().ok());
        let (class, subject, detail) = (it.next()??, it.next()??, it.next()??);
        Some(Parts { class: u8::try_from(class).ok()?, subject, detail })
    }

    pub fn serialize<S: Serializer>(code: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        code.as_deref().and_then(parts).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Option::<Either>::deserialize(d)? {
            Some(Either::Parts(p)) => Some(format!("{}.{}.{}", p.class, p.subject, p.detail)),
            Some(Either::Text(t)) => Some(t),
            None => None,
        })
    }
}

/// A time as Unix seconds (reading also takes RFC 3339 text).
pub(crate) mod unix_seconds {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Seconds(i64),
        Text(DateTime<Utc>),
    }

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(time.timestamp())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        match Either::deserialize(d)? {
            Either::Seconds(secs) => {
                DateTime::from_timestamp(secs, 0).ok_or_else(|| serde::de::Error::custom("timestamp out of range"))
            }
            Either::Text(t) => Ok(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{LogRecord, RecordType, ResponseInfo};

    #[test]
    fn records_have_kumomtas_shape_and_read_back() {
        let sender = petrel_message::EnvelopeAddress::parse("a@b.example").unwrap();
        let recipient = petrel_message::EnvelopeAddress::parse("c@d.example").unwrap();
        let msg = petrel_message::Message::new(sender, recipient, std::sync::Arc::from(&b"x"[..]));
        let mut response = ResponseInfo::new(550, Some("5.1.1"), "no such user");
        response.command = Some("RCPT TO".into());
        let record = LogRecord::for_message(RecordType::Bounce, &msg, response);
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["response"]["enhanced_code"], serde_json::json!({"class": 5, "subject": 1, "detail": 1}));
        assert_eq!(json["response"]["command"], "RCPT TO");
        assert!(json["timestamp"].is_i64() && json["created"].is_i64());
        assert!(json["event_time"].is_string() && json["created_time"].is_string());
        assert_eq!(json["bounce_classification"], "Uncategorized");
        assert!(json.get("feedback_report").is_some_and(|v| v.is_null()));
        let back: LogRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back.response.enhanced_code.as_deref(), Some("5.1.1"));
        assert_eq!(back.event_time, record.event_time);
    }
}

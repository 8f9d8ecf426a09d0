//! The shipped rules (`[petrel]/bounce_classifier/default.toml`) against
//! replies large mailbox providers really send, one test per category, and
//! rules files of the operator's own in KumoMTA's format.

use petrel_telemetry::{BounceClassifier, CacheSizes, ClassifierError, ResponseInfo};

fn shipped() -> BounceClassifier {
    BounceClassifier::load(&["[petrel]/bounce_classifier/default.toml".to_string()], CacheSizes::default()).unwrap()
}

/// Split "550 5.1.1 text" into a reply as delivery records it.
fn reply(line: &str) -> ResponseInfo {
    let (code, rest) = line.split_once(' ').unwrap();
    let code: u16 = code.parse().unwrap();
    match rest.split_once(' ') {
        Some((enhanced, text))
            if enhanced.chars().next().is_some_and(|c| c.is_ascii_digit()) && enhanced.contains('.') =>
        {
            ResponseInfo::new(code, Some(enhanced), text)
        }
        _ => ResponseInfo::new(code, None, rest),
    }
}

fn assert_class(class: &str, replies: &[&str]) {
    let classifier = shipped();
    for line in replies {
        assert_eq!(&*classifier.classify(&reply(line)), class, "{line}");
    }
}

macro_rules! category {
    ($name:ident, $class:literal, [$($reply:literal),+ $(,)?]) => {
        #[test]
        fn $name() {
            assert_class($class, &[$($reply),+]);
        }
    };
}

category!(
    invalid_recipient,
    "InvalidRecipient",
    [
        "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. For more information, go to https://support.google.com/mail/?p=NoSuchUser",
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        "554 delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0] - mta1234.mail.gq1.yahoo.com",
        "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). [AM0PR01MB1234.eurprd01.prod.exchangelabs.com]",
        "550 5.1.1 <someone@icloud.com>: user does not exist",
        "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
    ]
);

category!(
    inactive_mailbox,
    "InactiveMailbox",
    [
        "550 5.2.1 The email account that you tried to reach is disabled. For more information, go to https://support.google.com/mail/?p=DisabledUser",
        "554 delivery error: dd Sorry your message to someone@yahoo.com cannot be delivered. This mailbox is disabled (554.30). - mta1234.mail.bf1.yahoo.com",
    ]
);

category!(
    bad_domain,
    "BadDomain",
    [
        "550 5.1.2 domain no-such-domain.example does not exist (NXDOMAIN)",
        "550 5.1.10 domain example.net accepts no mail (null MX)",
        "550 5.1.2 Host unknown: the domain name in the address does not exist",
    ]
);

category!(dns_failure, "DNSFailure", ["451 4.4.3 DNS lookup for example.com failed: request timed out"]);

category!(
    quota_issues,
    "QuotaIssues",
    [
        "452 4.2.2 The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp",
        "552 5.2.2 Mailbox full",
        "452 4.3.1 Insufficient system storage",
    ]
);

category!(
    message_too_large,
    "MessageTooLarge",
    [
        "552 5.3.4 Your message exceeded Google's message size limits. For more information, go to https://support.google.com/mail/?p=MaxSizeError",
        "552 5.3.4 Message size exceeds fixed maximum message size",
    ]
);

category!(
    authentication_failed,
    "AuthenticationFailed",
    [
        "550 5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM.",
        "550 5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy. Please contact the administrator of example.com domain if this was a legitimate mail.",
        "550 5.7.515 Access denied, sending domain example.com doesn't meet the required authentication level. The sender's domain in the 5322.From address doesn't meet the authentication requirements defined for the sender.",
        "550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo requires all senders to authenticate with either SPF or DKIM.",
    ]
);

category!(
    tls_required,
    "TLSRequired",
    ["530 5.7.0 Must issue a STARTTLS command first.", "451 5.7.3 STARTTLS is required to send mail",]
);

category!(
    spam_block,
    "SpamBlock",
    [
        "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.10",
        "550 5.7.1 Unfortunately, messages from [192.0.2.10] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3140). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.",
        "550 5.7.606 Access denied, banned sending IP [192.0.2.10]. To request removal from this list please visit https://sender.office.com/ and follow the directions.",
    ]
);

category!(
    policy_related,
    "PolicyRelated",
    [
        "421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited. Please visit https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our Bulk Email Senders Guidelines.",
        "421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        "554 5.7.9 Message not accepted for policy reasons.  See https://postmaster.yahooinc.com/error-codes",
        "550 5.7.1 [192.0.2.10] Our system has detected that this message is likely suspicious due to the very low reputation of the sending IP address. To best protect our users from spam, the message has been blocked.",
    ]
);

category!(
    rate_limited,
    "RateLimited",
    [
        "450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered. Please resend your message at a later time.",
        "451 4.7.500 Server busy. Please try again later from [192.0.2.10]. (S77719) [BN8NAM11FT066.eop-nam11.prod.protection.outlook.com]",
        "421 4.7.0 [GL01] Message from (192.0.2.10) temporarily deferred - 4.16.50. Please refer to https://postmaster.yahooinc.com/error-codes",
        "421 Too many concurrent SMTP connections from this IP address; please try again later.",
    ]
);

category!(
    spam_content,
    "SpamContent",
    [
        "550 5.7.1 Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked. For more information, go to https://support.google.com/mail/?p=UnsolicitedMessageError",
        "554 5.7.1 Message rejected as spam by Content Filtering.",
    ]
);

category!(
    virus_related,
    "VirusRelated",
    ["554 5.7.1 The message was rejected because it contains a virus (Eicar-Signature)",]
);

category!(
    prohibited_attachment,
    "ProhibitedAttachment",
    [
        "552 5.7.0 This message was blocked because its content presents a potential security issue. Please visit https://support.google.com/mail/?p=BlockedMessage to review our message content and attachment content guidelines.",
    ]
);

category!(
    relay_denied,
    "RelayDenied",
    ["554 5.7.1 <someone@example.org>: Relay access denied", "550 5.7.1 Relaying denied",]
);

category!(message_expired, "MessageExpired", ["551 5.4.7 Next delivery time would be past max_age of 3 days"]);

category!(
    no_answer_from_host,
    "NoAnswerFromHost",
    [
        "451 4.4.1 cannot connect to 192.0.2.25:25: Connection refused (os error 111)",
        "451 4.4.2 timed out after 300s waiting for the DATA reply",
    ]
);

category!(
    bad_connection,
    "BadConnection",
    ["451 4.4.2 connection lost during DATA: Connection reset by peer (os error 104)"]
);

#[test]
fn a_reply_no_rule_matches_is_uncategorized() {
    assert_class("Uncategorized", &["250 2.0.0 OK", "451 please come back some time"]);
}

#[test]
fn operator_rules_in_kumomta_format_come_before_or_after_the_shipped_ones() {
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("own.toml");
    std::fs::write(
        &own,
        "[rules]\nCustomBlock = [ '^550 5\\.7\\.1 .*our-special-filter' ]\nInvalidRecipient = [ 'gone away' ]\n",
    )
    .unwrap();
    let files = vec![own.display().to_string(), "[petrel]/bounce_classifier/default.toml".to_string()];
    let classifier = BounceClassifier::load(&files, CacheSizes::default()).unwrap();
    assert_eq!(&*classifier.classify(&reply("550 5.7.1 spam rejected by our-special-filter")), "CustomBlock");
    assert_eq!(&*classifier.classify(&reply("550 5.0.0 she has gone away")), "InvalidRecipient");
    assert_eq!(&*classifier.classify(&reply("552 5.2.2 Mailbox full")), "QuotaIssues", "the shipped rules still apply");
    // Cached answers are the same answers.
    assert_eq!(&*classifier.classify(&reply("552 5.2.2 Mailbox full")), "QuotaIssues");
}

#[test]
fn bad_rules_files_are_refused_naming_the_file_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let bad_regex = dir.path().join("bad.toml");
    std::fs::write(&bad_regex, "[rules]\nSpamBlock = [ 'unclosed (group' ]\n").unwrap();
    let err = BounceClassifier::load(&[bad_regex.display().to_string()], CacheSizes::default()).unwrap_err();
    assert!(
        matches!(err, ClassifierError::Regex { .. }) && err.to_string().contains("bad.toml: rules.SpamBlock"),
        "{err}"
    );
    let wrong_shape = dir.path().join("shape.toml");
    std::fs::write(&wrong_shape, "[rules]\nSpamBlock = 'not a list'\n").unwrap();
    let err = BounceClassifier::load(&[wrong_shape.display().to_string()], CacheSizes::default()).unwrap_err();
    assert!(err.to_string().contains("shape.toml") && err.to_string().contains("rules.SpamBlock"), "{err}");
    let missing = dir.path().join("missing.toml").display().to_string();
    assert!(
        BounceClassifier::load(&[missing], CacheSizes::default()).unwrap_err().to_string().contains("missing.toml")
    );
}

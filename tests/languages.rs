//! Several languages in one message, on real servers with a real client:
//!
//! 1. What the servers accept from a component, measured on a raw XEP-0114 stream: Prosody
//!    (Debian's 0.12, `component_stanza_size_limit` 512 KiB by default) stores a message of
//!    512 KiB and ends the stream with a `not-well-formed` stream error on a larger one, the
//!    message lost; ejabberd 23.01 (`ejabberd_service` without `max_stanza_size`) stores and
//!    delivers a message of 4 MiB.
//! 2. Prosody and ejabberd: a message in three languages reaches online clients with the three
//!    bodies, the default first and the message's `xml:lang` the default's; a client set to
//!    German or French reads its body (slixmpp's `msg['body|de']`), a client without a language
//!    the default; an offline account stores the same stanza; `getBroadcast` shows the
//!    languages; a correction with translations replaces the message in every language; a
//!    message as large as the limit allows arrives, one byte more is `message_too_large` and
//!    creates nothing.
//! 3. In process: every refusal of languages (bad tag, a language twice, translations without
//!    `language`, texts over the limits, too many translations) is `bad_parameter` naming the
//!    argument, and creates nothing.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::admin::{Admin, Auth};
use support::app::{App, AppOptions};
use support::component::RawComponent;
use support::ejabberd::{Ejabberd, EjabberdStorage};
use support::prosody::{COMPONENT_JID, COMPONENT_SECRET, DOMAIN, Prosody, ProsodyStorage};
use support::scenarios::{XmppServer, accounts_and_sender};
use support::serve::{JobStore, Serve};
use support::stanza::{message_id, parse_stored};
use support::xmpp_client::{ReceivedMessage, XmppClient};
use xmpp_broadcast::job::spec::MAX_MESSAGE_BYTES;
use xmpp_broadcast::job::{MAX_JOB_ID, Translation};
use xmpp_broadcast::xmpp::{Announcement, Content, Texts};

const PASSWORD: &str = "pw";
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

const START: &str = "mutation Start($domain: DomainName!, $sender: BareJID!, $subject: String!, \
    $body: String!, $language: String, $translations: [BroadcastTranslationInput!], \
    $key: String) { broadcast { startBroadcast(name: \"languages\", domain: $domain, \
    messageSubject: $subject, messageBody: $body, senderJid: $sender, messageRate: 100, \
    recipientGroup: ALL_USERS_IN_DOMAIN, language: $language, translations: $translations, \
    idempotencyKey: $key) { message ids } } }";
const CORRECT: &str = "mutation Correct($domain: DomainName!, $id: Int!, $subject: String!, \
    $body: String!, $language: String, $translations: [BroadcastTranslationInput!]) { \
    broadcast { correctBroadcast(domain: $domain, id: $id, messageSubject: $subject, \
    messageBody: $body, messageRate: 100, language: $language, translations: $translations) \
    { message ids } } }";
const LANGUAGES: &str = "query Get($domain: DomainName!, $id: Int!) { broadcast { \
    getBroadcast(domain: $domain, id: $id) { language translations { language messageSubject \
    messageBody } } } }";

/// The error of a refused request: its code, message and `extensions.argument`.
#[derive(Debug)]
struct Refusal {
    code: String,
    message: String,
    argument: Option<String>,
}

/// `startBroadcast` with `language` and `translations`; the job's id, or the refusal.
async fn start(
    admin: &Admin,
    sender: &str,
    (subject, body): (&str, &str),
    language: Option<&str>,
    translations: &[Translation],
) -> Result<i64, Refusal> {
    start_once(admin, sender, (subject, body), language, translations, None).await
}

/// [`start`] with an idempotency key.
async fn start_once(
    admin: &Admin,
    sender: &str,
    (subject, body): (&str, &str),
    language: Option<&str>,
    translations: &[Translation],
    key: Option<&str>,
) -> Result<i64, Refusal> {
    let variables = json!({
        "domain": DOMAIN, "sender": sender, "subject": subject, "body": body,
        "language": language, "translations": inputs(translations), "key": key,
    });
    run(admin, START, variables, "startBroadcast").await
}

/// `correctBroadcast` of job `id` with `language` and `translations`.
async fn correct(
    admin: &Admin,
    id: i64,
    (subject, body): (&str, &str),
    language: Option<&str>,
    translations: &[Translation],
) -> Result<i64, Refusal> {
    let variables = json!({
        "domain": DOMAIN, "id": id, "subject": subject, "body": body,
        "language": language, "translations": inputs(translations),
    });
    run(admin, CORRECT, variables, "correctBroadcast").await
}

/// `translations` as the API's `BroadcastTranslationInput`s (none: null).
fn inputs(translations: &[Translation]) -> Value {
    if translations.is_empty() {
        return Value::Null;
    }
    translations
        .iter()
        .map(
            |t| json!({"language": t.language, "messageSubject": t.subject, "messageBody": t.body}),
        )
        .collect()
}

async fn run(admin: &Admin, query: &str, variables: Value, field: &str) -> Result<i64, Refusal> {
    let (_, body) = admin.post(query, variables, Auth::Admin).await;
    if let Some(error) = body["errors"].get(0) {
        let text = |value: &Value| value.as_str().map(str::to_owned);
        return Err(Refusal {
            code: text(&error["extensions"]["code"]).unwrap_or_default(),
            message: text(&error["message"]).unwrap_or_default(),
            argument: text(&error["extensions"]["argument"]),
        });
    }
    let id = &body["data"]["broadcast"][field]["ids"][0];
    Ok(id.as_i64().unwrap_or_else(|| panic!("an id: {body}")))
}

fn translation(language: &str, subject: &str, body: &str) -> Translation {
    Translation {
        language: language.into(),
        subject: subject.into(),
        body: body.into(),
    }
}

/// `(xml:lang or "", text)` pairs, as the client reports them.
fn pairs(texts: &[(&str, &str)]) -> Vec<(String, String)> {
    texts
        .iter()
        .map(|(lang, text)| (lang.to_string(), text.to_string()))
        .collect()
}

// 1. What the servers accept from a component.

/// A message of exactly `size` bytes from the component to `to`, its body padded.
fn message_of_size(size: usize, to: &str, id: &str) -> String {
    let head = format!("<message type='chat' from='admin@{DOMAIN}' to='{to}' id='{id}'><body>");
    let tail = "</body></message>";
    let pad = size - head.len() - tail.len();
    format!("{head}{}{tail}", "x".repeat(pad))
}

/// Sends a message of `size` bytes on a new component connection to `addr`; returns what the
/// server wrote until it closed the stream.
async fn send_one(addr: &str, size: usize, to: &str, id: &str) -> String {
    let mut component = RawComponent::connect(
        addr,
        COMPONENT_JID,
        COMPONENT_SECRET,
        Duration::from_secs(10),
    )
    .await
    .expect("component handshake");
    // A server that ends the stream early may reset the connection while it is written.
    let _ = component.try_send(&message_of_size(size, to, id)).await;
    component
        .close_and_read()
        .await
        .unwrap_or_else(|err| format!("connection broken: {err}"))
}

/// Sends one message of each size; returns, for each, the server's answer at the close and
/// the stored length of the message if the recipient's offline store got it; then checks
/// that the recipient's client receives the stored ones.
async fn probe(
    server: &impl XmppServer,
    addr: &str,
    sizes: &[usize],
) -> Vec<(String, Option<usize>)> {
    let user = server.register_user("big", PASSWORD).await;
    let mut results = Vec::new();
    for (n, size) in sizes.iter().enumerate() {
        let id = format!("size-{n}");
        let answer = send_one(addr, *size, &user, &id).await;
        let stored = server
            .offline_messages()
            .await
            .into_iter()
            .find(|(_, xml)| {
                xml.contains(&format!("id='{id}'")) || xml.contains(&format!("id=\"{id}\""))
            })
            .map(|(_, xml)| xml.len());
        results.push((answer, stored));
    }
    let stored: Vec<String> = (0..sizes.len())
        .filter(|n| results[*n].1.is_some())
        .map(|n| format!("size-{n}"))
        .collect();
    let mut client = XmppClient::login(&user, PASSWORD, server.c2s_port());
    client.wait_online(LOGIN_TIMEOUT).await;
    let mut received = Vec::new();
    while received.len() < stored.len() {
        let message = client
            .next_message(JOB_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("only {received:?} of {stored:?} delivered"));
        received.push(message.id);
    }
    assert_eq!(received, stored);
    results
}

#[tokio::test(flavor = "multi_thread")]
async fn prosody_ends_the_stream_on_a_message_over_512_kib() {
    let prosody = Prosody::start(ProsodyStorage::Sqlite).await;
    let limit = 512 * 1024;
    assert_eq!(MAX_MESSAGE_BYTES, limit);
    let results = probe(
        &prosody,
        &prosody.component_addr(),
        &[limit, limit + 16 * 1024, 2 * limit],
    )
    .await;
    assert_eq!(results[0].0, "</stream:stream>", "{results:?}");
    assert!(results[0].1.is_some(), "a message of 512 KiB is stored");
    for (answer, stored) in &results[1..] {
        assert!(
            answer.contains("<stream:error><not-well-formed"),
            "a larger message ends the stream: {answer}"
        );
        assert_eq!(*stored, None, "and is lost");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ejabberd_takes_a_message_of_4_mib_from_a_component() {
    let ejabberd = Ejabberd::start(EjabberdStorage::Sqlite).await;
    let sizes = [MAX_MESSAGE_BYTES + 16 * 1024, 4 * 1024 * 1024];
    let results = probe(&ejabberd, &ejabberd.component_addr(), &sizes).await;
    for ((answer, stored), size) in results.iter().zip(sizes) {
        assert_eq!(answer, "</stream:stream>", "{size}");
        assert!(stored.is_some_and(|len| len >= size), "{size}: {stored:?}");
    }
}

// 2. Several languages on real servers.

/// Translations whose message, for the longest recipient address, is exactly
/// [`MAX_MESSAGE_BYTES`] (`over`: one byte more): bodies of `&`, which XML writes in five
/// bytes, so that the request stays small.
fn translations_at_the_limit(sender: &str, over: bool) -> Vec<Translation> {
    let sender = jid::BareJid::new(sender).unwrap();
    let size = |translations: &[Translation]| {
        let texts = Texts {
            language: Some("en"),
            subject: "Limit",
            body: "At the limit.",
            translations,
        };
        Announcement::with_texts(MAX_JOB_ID, sender.clone(), texts, Content::Broadcast)
            .largest_message_len(DOMAIN)
    };
    let mut translations = Vec::new();
    for n in 0.. {
        translations.push(translation(&format!("x-l{n}"), "", "x"));
        let left = MAX_MESSAGE_BYTES + usize::from(over) - size(&translations);
        let body = if left <= 5 * 15_000 {
            format!("{}{}", "&".repeat(left / 5), "x".repeat(1 + left % 5))
        } else {
            "&".repeat(16_000)
        };
        translations.last_mut().unwrap().body = body;
        if left <= 5 * 15_000 {
            break;
        }
    }
    assert_eq!(size(&translations), MAX_MESSAGE_BYTES + usize::from(over));
    translations
}

/// 2. on `server`.
async fn three_languages(server: &impl XmppServer) {
    let (recipients, sender) = accounts_and_sender(server, 4).await;
    let mut plain = XmppClient::login(&recipients[0], PASSWORD, server.c2s_port());
    let mut german = XmppClient::login_in(&recipients[1], PASSWORD, server.c2s_port(), Some("de"));
    let mut french = XmppClient::login_in(&recipients[2], PASSWORD, server.c2s_port(), Some("fr"));
    for client in [&mut plain, &mut german, &mut french] {
        client.wait_online(LOGIN_TIMEOUT).await;
    }
    let offline = recipients[3].clone();
    let serve = Serve::start(server.serve_config(JobStore::Sqlite)).await;
    let admin = serve.admin();

    let translations = [
        translation("de", "Wartung", "Heute Abend von 22 bis 23 Uhr."),
        translation("fr", "", "Ce soir de 22 h à 23 h."),
    ];
    let id = start(
        admin,
        &sender,
        ("Maintenance", "Tonight from 22:00 to 23:00."),
        Some("en"),
        &translations,
    )
    .await
    .expect("startBroadcast");
    admin.wait_state(id, "FINISHED", JOB_TIMEOUT).await;
    let bodies = pairs(&[
        ("", "Tonight from 22:00 to 23:00."),
        ("de", "Heute Abend von 22 bis 23 Uhr."),
        ("fr", "Ce soir de 22 h à 23 h."),
    ]);
    let subjects = pairs(&[("", "Maintenance"), ("de", "Wartung")]);
    let expect = |message: &ReceivedMessage, recipient: &str, picked: &str| {
        assert_eq!(message.id, message_id(id, recipient));
        assert_eq!(message.lang.as_deref(), Some("en"), "{message:?}");
        assert_eq!(message.bodies, bodies, "the default first");
        assert_eq!(message.subjects, subjects);
        assert_eq!(
            message.body, "Tonight from 22:00 to 23:00.",
            "a plain read: the default"
        );
        if let Some(body) = &message.body_in_language {
            assert_eq!(body, picked);
        }
    };
    for (client, recipient, picked) in [
        (&mut plain, &recipients[0], "Tonight from 22:00 to 23:00."),
        (
            &mut german,
            &recipients[1],
            "Heute Abend von 22 bis 23 Uhr.",
        ),
        (&mut french, &recipients[2], "Ce soir de 22 h à 23 h."),
    ] {
        let message = client.next_message(JOB_TIMEOUT).await.expect("the message");
        expect(&message, recipient, picked);
        if picked != "Tonight from 22:00 to 23:00." {
            assert!(message.body_in_language.is_some(), "{message:?}");
        }
    }
    // The offline account's store holds the same texts in the same order.
    let stored = server
        .offline_messages()
        .await
        .into_iter()
        .find(|(user, _)| offline.starts_with(&format!("{user}@")))
        .expect("a stored message")
        .1;
    let message = parse_stored(&stored).unwrap_or_else(|e| panic!("{e}: {stored}"));
    let stored_bodies: Vec<(String, String)> = message
        .children()
        .filter(|child| child.name() == "body")
        .map(|child| {
            let lang = child
                .attr_ns(&tokio_xmpp::minidom::rxml::Namespace::XML, "lang")
                .unwrap_or_default();
            (lang.to_owned(), child.text())
        })
        .collect();
    assert_eq!(stored_bodies, bodies, "{stored}");

    let shown = admin
        .graphql(LANGUAGES, json!({"domain": DOMAIN, "id": id}))
        .await
        .expect("getBroadcast");
    assert_eq!(
        shown["broadcast"]["getBroadcast"],
        json!({"language": "en", "translations": [
            {"language": "de", "messageSubject": "Wartung",
             "messageBody": "Heute Abend von 22 bis 23 Uhr."},
            {"language": "fr", "messageSubject": "", "messageBody": "Ce soir de 22 h à 23 h."},
        ]})
    );

    // A correction replaces the message in every language.
    let corrected = [
        translation("de", "Wartung", "Heute Abend von 23 bis 24 Uhr."),
        translation("fr", "", "Ce soir de 23 h à minuit."),
    ];
    let correction = correct(
        admin,
        id,
        ("Maintenance", "Tonight from 23:00 to midnight."),
        Some("en"),
        &corrected,
    )
    .await
    .expect("correctBroadcast");
    admin.wait_state(correction, "FINISHED", JOB_TIMEOUT).await;
    for (client, recipient, picked) in [
        (&mut plain, &recipients[0], None),
        (
            &mut german,
            &recipients[1],
            Some("Heute Abend von 23 bis 24 Uhr."),
        ),
        (
            &mut french,
            &recipients[2],
            Some("Ce soir de 23 h à minuit."),
        ),
    ] {
        let message = client
            .next_message(JOB_TIMEOUT)
            .await
            .expect("the correction");
        assert_eq!(message.id, message_id(correction, recipient));
        assert_eq!(message.replace_id, Some(message_id(id, recipient)));
        assert_eq!(message.lang.as_deref(), Some("en"));
        assert_eq!(
            message.bodies,
            pairs(&[
                ("", "Tonight from 23:00 to midnight."),
                ("de", "Heute Abend von 23 bis 24 Uhr."),
                ("fr", "Ce soir de 23 h à minuit."),
            ])
        );
        if let Some(picked) = picked {
            assert_eq!(message.body_in_language.as_deref(), Some(picked));
        }
    }

    // As large as the limit allows: it arrives; one byte more is refused, nothing created.
    let jobs = admin.get_broadcasts(DOMAIN).await.len();
    let over = translations_at_the_limit(&sender, true);
    let refusal = start(
        admin,
        &sender,
        ("Limit", "At the limit."),
        Some("en"),
        &over,
    )
    .await
    .expect_err("over the limit");
    assert_eq!(refusal.code, "message_too_large", "{refusal:?}");
    assert!(
        refusal.message.starts_with(&format!(
            "The message would be {} bytes",
            MAX_MESSAGE_BYTES + 1
        )),
        "{refusal:?}"
    );
    assert_eq!(admin.get_broadcasts(DOMAIN).await.len(), jobs);
    let at_limit = translations_at_the_limit(&sender, false);
    let largest = start(
        admin,
        &sender,
        ("Limit", "At the limit."),
        Some("en"),
        &at_limit,
    )
    .await
    .expect("a message at the limit");
    admin.wait_state(largest, "FINISHED", JOB_TIMEOUT).await;
    let message = plain
        .next_message(JOB_TIMEOUT)
        .await
        .expect("the largest message");
    assert_eq!(message.id, message_id(largest, &recipients[0]));
    assert_eq!(message.bodies.len(), 1 + at_limit.len());
    assert_eq!(
        message.bodies.last().unwrap().1,
        at_limit.last().unwrap().body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_languages_on_prosody() {
    three_languages(&Prosody::start(ProsodyStorage::Sqlite).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_languages_on_ejabberd() {
    three_languages(&Ejabberd::start(EjabberdStorage::Sqlite).await).await;
}

// 3. Refusals, in process.

#[tokio::test(flavor = "multi_thread")]
async fn refused_languages_create_nothing() {
    let app = App::start(AppOptions::one_domain(DOMAIN, 3)).await;
    let admin = app.admin();
    let sender = format!("admin@{DOMAIN}");
    let texts = ("Subject", "Body");
    let de = |body: &str| translation("de", "", body);
    let cases: Vec<(Option<&str>, Vec<Translation>, &str, &str)> = vec![
        (
            Some("en_US"),
            vec![],
            "language",
            "\"en_US\" is not a BCP 47 language tag",
        ),
        (
            Some(""),
            vec![],
            "language",
            "\"\" is not a BCP 47 language tag",
        ),
        (
            Some("en"),
            vec![translation("deutsch language", "", "x")],
            "translations",
            "translation 1: \"deutsch language\" is not a BCP 47 language tag",
        ),
        (
            Some("en"),
            vec![de("a"), translation("DE", "", "b")],
            "translations",
            "translation 2: language de is given twice",
        ),
        (
            Some("en"),
            vec![translation("EN", "", "b")],
            "translations",
            "translation 1: language en is given twice",
        ),
        (
            None,
            vec![de("a")],
            "translations",
            "translations need `language`",
        ),
        (
            Some("en"),
            vec![de(&"x".repeat(16_001))],
            "translations",
            "translation 1 (de): its body is outside the default body's limits",
        ),
        (
            Some("en"),
            vec![de("")],
            "translations",
            "translation 1 (de): its body is outside",
        ),
        (
            Some("en"),
            vec![translation("de", &"x".repeat(1025), "b")],
            "translations",
            "translation 1 (de): its subject",
        ),
        (
            Some("en"),
            (0..65)
                .map(|n| translation(&format!("x-l{n}"), "", "b"))
                .collect(),
            "translations",
            "65 translations, at most 64",
        ),
    ];
    for (language, translations, argument, message) in cases {
        let refusal = start(admin, &sender, texts, language, &translations)
            .await
            .expect_err("refused");
        assert_eq!(refusal.code, "bad_parameter", "{refusal:?}");
        assert_eq!(refusal.argument.as_deref(), Some(argument), "{refusal:?}");
        assert!(
            refusal
                .message
                .starts_with(&format!("Invalid parameter: {argument} ({message}")),
            "{refusal:?}"
        );
    }
    assert_eq!(
        admin.get_broadcasts(DOMAIN).await.len(),
        0,
        "nothing created"
    );

    // A correction is checked alike, before anything is created.
    let id = start(admin, &sender, texts, None, &[])
        .await
        .expect("start");
    admin.wait_state(id, "FINISHED", JOB_TIMEOUT).await;
    let refusal = correct(admin, id, texts, Some("en"), &[de("a"), de("b")])
        .await
        .expect_err("refused");
    assert_eq!(
        (refusal.code.as_str(), refusal.argument.as_deref()),
        ("bad_parameter", Some("translations"))
    );
    let over = translations_at_the_limit(&sender, true);
    let refusal = correct(admin, id, ("Limit", "At the limit."), Some("en"), &over)
        .await
        .expect_err("refused");
    assert_eq!(refusal.code, "message_too_large", "{refusal:?}");
    assert_eq!(
        admin.get_broadcasts(DOMAIN).await.len(),
        1,
        "nothing created"
    );
}

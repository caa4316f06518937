//! Self-test of the test harness, independent of the product: Prosody starts on both
//! storages, bulk registration works, a message injected over a raw XEP-0114 connection
//! reaches an online slixmpp client at once and an offline user from the offline store,
//! and the stored stanza passes the same structural check the product's messages must.

mod support;

use std::time::{Duration, Instant};

use support::component::RawComponent;
use support::pg::PgDatabase;
use support::prosody::{COMPONENT_JID, COMPONENT_SECRET, DOMAIN, Prosody, ProsodyStorage};
use support::stanza::{Announcement, message_id};
use support::xmpp_client::XmppClient;

const PASSWORD: &str = "pw";
const TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn component_message_reaches_users_with_sqlite_storage() {
    component_message_reaches_users(ProsodyStorage::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn component_message_reaches_users_with_postgres_storage() {
    component_message_reaches_users(ProsodyStorage::Postgres(PgDatabase::create().await)).await;
}

async fn component_message_reaches_users(storage: ProsodyStorage) {
    let started = Instant::now();
    let prosody = Prosody::start(storage).await;
    eprintln!("prosody ready after {:?}", started.elapsed());

    let started = Instant::now();
    let users = prosody.register_users("u", 200, PASSWORD).await;
    eprintln!("200 users registered in {:?}", started.elapsed());
    let (online, offline) = (&users[0], &users[1]);

    let started = Instant::now();
    let mut client = XmppClient::login(online, PASSWORD, prosody.c2s_port());
    client.wait_online(TIMEOUT).await;
    eprintln!("client online after {:?}", started.elapsed());

    let announcement = Announcement {
        job_id: 0,
        sender: format!("admin@{DOMAIN}"),
        subject: "Harness <check>".into(),
        body: "Tom & Jerry's \"test\" message".into(),
    };
    let mut component = RawComponent::connect(
        &prosody.component_addr(),
        COMPONENT_JID,
        COMPONENT_SECRET,
        TIMEOUT,
    )
    .await
    .expect("component handshake");
    for user in [online, offline] {
        component.send(&announcement.stanza(user)).await;
    }
    component.close().await;

    let received = client.next_message(TIMEOUT).await.expect("online delivery");
    assert_eq!(received.from, announcement.sender);
    assert_eq!(received.to, *online);
    assert_eq!(received.kind, "chat");
    assert_eq!(received.subject, announcement.subject);
    assert_eq!(received.body, announcement.body);
    assert_eq!(received.id, message_id(0, online));
    assert_eq!(received.origin_id.as_deref(), Some(received.id.as_str()));
    assert!(!received.delayed, "an online delivery carries no <delay/>");

    let stored = prosody.offline_messages().await;
    assert_eq!(
        stored.len(),
        1,
        "only the offline user has a stored message: {stored:?}"
    );
    assert_eq!(format!("{}@{DOMAIN}", stored[0].0), *offline);
    announcement.assert_stanza(&stored[0].1, offline);

    let mut late = XmppClient::login(offline, PASSWORD, prosody.c2s_port());
    late.wait_online(TIMEOUT).await;
    let received = late.next_message(TIMEOUT).await.expect("offline delivery");
    assert_eq!(received.id, message_id(0, offline));
    assert!(
        received.delayed,
        "a delivery from the offline store carries <delay/>"
    );
}

#[test]
fn message_id_matches_the_documented_derivation() {
    // sha1("1:u0001@example.com"), computed independently with `sha1sum`.
    assert_eq!(
        message_id(1, "u0001@example.com"),
        "xb-c08398d51deeb79620b400e87f2e4feb08e67293"
    );
}

#[test]
fn stanza_check_ignores_serialization_details_but_not_content() {
    let announcement = Announcement {
        job_id: 7,
        sender: "admin@example.com".into(),
        subject: "S".into(),
        body: "B & more".into(),
    };
    let to = "u0001@example.com";
    let id = message_id(7, to);
    // As Prosody stores it: attributes reordered, xml:lang added, other quoting.
    let stored = format!(
        "<message xml:lang='en' id=\"{id}\" to='{to}' from='admin@example.com' type='chat'>\
         <subject>S</subject><body>B &amp; more</body>\
         <origin-id id='{id}' xmlns='urn:xmpp:sid:0'/></message>"
    );
    assert_eq!(announcement.check_stanza(&stored, to), Ok(()));
    let with_ns = stored.replacen("<message", "<message xmlns='jabber:client'", 1);
    assert_eq!(announcement.check_stanza(&with_ns, to), Ok(()));
    assert_eq!(
        announcement.check_stanza(&announcement.stanza(to), to),
        Ok(())
    );

    let changed = [
        stored.replace("type='chat'", "type='normal'"),
        stored.replace("<subject>S</subject>", ""),
        stored.replace("B &amp; more", "B"),
        stored.replace(&format!("origin-id id='{id}'"), "origin-id id='x'"),
        stored.replace("<message ", "<message extra='1' "),
        stored.replace("</message>", "<store xmlns='urn:xmpp:hints'/></message>"),
    ];
    for xml in changed {
        assert!(
            announcement.check_stanza(&xml, to).is_err(),
            "accepted {xml}"
        );
    }
    assert!(
        announcement
            .check_stanza(&stored, "u0002@example.com")
            .is_err()
    );
}

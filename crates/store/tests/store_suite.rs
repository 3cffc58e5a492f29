//! The behaviour every `Store` backend must have. Each test is written once and run on
//! SQLite and on PostgreSQL (when `DATABASE_URL` is set), each on a database of its own.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use concierge_core::{
    Approval, ApprovalId, ApprovalStatus, ConversationId, ConversationStatus, Feedback, JobId, JobState, MessageId,
    TicketId, TicketPriority, TicketStatus, ToolCallOutcome, UsageSummary,
};
use concierge_store::{Store, StoreError};
use serde_json::json;
use support::*;

fn assert_conflict<T: std::fmt::Debug>(result: concierge_store::Result<T>) {
    assert!(matches!(result, Err(StoreError::Conflict { .. })), "expected Conflict, got {result:?}");
}

fn assert_not_found<T: std::fmt::Debug>(result: concierge_store::Result<T>) {
    assert!(matches!(result, Err(StoreError::NotFound { .. })), "expected NotFound, got {result:?}");
}

// ---- tenants and keys -------------------------------------------------------------------

async fn tenants_round_trip_and_an_upsert_keeps_created_at(store: Arc<dyn Store>) {
    let acme = tenant("acme");
    store.upsert_tenant(&acme).await.unwrap();
    assert_eq!(store.tenant(&acme.id).await.unwrap(), Some(acme.clone()));

    let renamed = concierge_core::Tenant {
        name: "Acme Corporation".into(),
        tier: "premium".into(),
        created_at: at(500),
        ..acme.clone()
    };
    store.upsert_tenant(&renamed).await.unwrap();
    let stored = store.tenant(&acme.id).await.unwrap().unwrap();
    assert_eq!((stored.name.as_str(), stored.tier.as_str()), ("Acme Corporation", "premium"));
    assert_eq!(stored.created_at, acme.created_at);

    assert_eq!(store.tenant(&tenant_id("nobody")).await.unwrap(), None);
}

async fn api_keys_round_trip_and_revocation_keeps_the_first_time(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let key = api_key(&acme, "ck_live_abc");
    store.insert_api_key(&key).await.unwrap();
    assert_eq!(store.api_key("ck_live_abc").await.unwrap(), Some(key.clone()));
    assert_eq!(store.api_key("ck_live_zzz").await.unwrap(), None);

    store.revoke_api_key("ck_live_abc", at(60)).await.unwrap();
    store.revoke_api_key("ck_live_abc", at(120)).await.unwrap();
    let revoked = store.api_key("ck_live_abc").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(at(60)));

    assert_not_found(store.revoke_api_key("ck_live_zzz", at(60)).await);
}

async fn a_duplicate_api_key_prefix_is_a_conflict(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let globex = seed_tenant(&store, "globex").await;
    store.insert_api_key(&api_key(&acme, "ck_live_abc")).await.unwrap();
    assert_conflict(store.insert_api_key(&api_key(&globex, "ck_live_abc")).await);
    assert_eq!(store.api_key("ck_live_abc").await.unwrap().unwrap().tenant_id, acme);

    // Each tenant lists its own keys only.
    store.insert_api_key(&api_key(&globex, "ck_live_def")).await.unwrap();
    let listed = |keys: Vec<concierge_core::ApiKeyRecord>| keys.into_iter().map(|k| k.prefix).collect::<Vec<_>>();
    assert_eq!(listed(store.api_keys(&acme).await.unwrap()), ["ck_live_abc"]);
    assert_eq!(listed(store.api_keys(&globex).await.unwrap()), ["ck_live_def"]);
    assert!(store.api_keys(&tenant_id("nobody")).await.unwrap().is_empty());
}

// ---- conversations and messages ---------------------------------------------------------

async fn conversations_round_trip_and_a_status_change_bumps_updated_at(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let mut conversation = conversation(&acme, 10);
    conversation.customer_ref = None;
    store.create_conversation(&conversation).await.unwrap();
    assert_eq!(store.conversation(&acme, conversation.id).await.unwrap(), Some(conversation.clone()));
    assert_conflict(store.create_conversation(&conversation).await);

    store.set_conversation_status(&acme, conversation.id, ConversationStatus::Escalated).await.unwrap();
    let stored = store.conversation(&acme, conversation.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ConversationStatus::Escalated);
    assert!(stored.updated_at > conversation.updated_at);

    assert_not_found(store.set_conversation_status(&acme, ConversationId::new(), ConversationStatus::Closed).await);
}

async fn conversations_are_listed_newest_first_and_paged_with_before(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let mut created = Vec::new();
    for i in 0..5 {
        let conversation = conversation(&acme, i * 10);
        store.create_conversation(&conversation).await.unwrap();
        created.push(conversation.id);
    }
    let ids = |page: Vec<concierge_core::Conversation>| page.into_iter().map(|c| c.id).collect::<Vec<_>>();

    let first = ids(store.list_conversations(&acme, 2, None).await.unwrap());
    assert_eq!(first, vec![created[4], created[3]]);
    let second = ids(store.list_conversations(&acme, 2, Some(created[3])).await.unwrap());
    assert_eq!(second, vec![created[2], created[1]]);
    let last = ids(store.list_conversations(&acme, 2, Some(created[1])).await.unwrap());
    assert_eq!(last, vec![created[0]]);
    assert!(store.list_conversations(&acme, 2, Some(created[0])).await.unwrap().is_empty());
    assert_eq!(store.list_conversations(&acme, 100, None).await.unwrap().len(), 5);
}

async fn appended_messages_are_numbered_from_one_and_read_back_in_order(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let conversation = seed_conversation(&store, &acme).await;
    let mut appended = Vec::new();
    for text in ["Where is my parcel?", "It left the depot today.", "Thanks!"] {
        appended.push(store.append_message(new_message(&conversation, text)).await.unwrap());
    }
    assert_eq!(appended.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(appended.windows(2).all(|pair| pair[0].created_at <= pair[1].created_at));
    assert_eq!(store.messages(&acme, conversation.id).await.unwrap(), appended);

    let stored = store.conversation(&acme, conversation.id).await.unwrap().unwrap();
    assert_eq!(stored.updated_at, appended[2].created_at);
}

async fn concurrent_appends_get_consecutive_sequence_numbers(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let conversation = seed_conversation(&store, &acme).await;
    let writers: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            let message = new_message(&conversation, &format!("message {i}"));
            tokio::spawn(async move { store.append_message(message).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for writer in writers {
        seqs.push(writer.await.unwrap().expect("every concurrent append succeeds").seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());

    let stored = store.messages(&acme, conversation.id).await.unwrap();
    assert_eq!(stored.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=50).collect::<Vec<_>>());
    assert_eq!(stored.iter().map(|m| m.id).collect::<HashSet<_>>().len(), 50);
}

async fn appending_to_an_unknown_conversation_is_not_found(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let globex = seed_tenant(&store, "globex").await;
    let conversation = seed_conversation(&store, &acme).await;

    let mut unknown = new_message(&conversation, "hello?");
    unknown.conversation_id = ConversationId::new();
    assert_not_found(store.append_message(unknown).await);

    let mut other_tenant = new_message(&conversation, "hello?");
    other_tenant.tenant_id = globex;
    assert_not_found(store.append_message(other_tenant).await);

    assert!(store.messages(&acme, conversation.id).await.unwrap().is_empty());
}

// ---- checkpoints and the audit log ------------------------------------------------------

async fn the_latest_checkpoint_is_the_one_with_the_highest_step(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let conversation = seed_conversation(&store, &acme).await;
    let checkpoint = |step: i64| concierge_core::Checkpoint {
        run_id: "run-7".into(),
        conversation_id: conversation.id,
        tenant_id: acme.clone(),
        step,
        node: format!("node-{step}"),
        state: json!({ "step": step, "slots": { "order": "A-1001" } }),
        created_at: at(step),
    };
    for step in [1, 3, 2] {
        store.put_checkpoint(&checkpoint(step)).await.unwrap();
    }
    assert_eq!(store.latest_checkpoint("run-7").await.unwrap(), Some(checkpoint(3)));
    assert_eq!(store.latest_checkpoint("run-8").await.unwrap(), None);
}

async fn a_second_checkpoint_for_the_same_step_is_a_conflict(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let conversation = seed_conversation(&store, &acme).await;
    let checkpoint = concierge_core::Checkpoint {
        run_id: "run-7".into(),
        conversation_id: conversation.id,
        tenant_id: acme.clone(),
        step: 1,
        node: "classify".into(),
        state: json!({}),
        created_at: at(1),
    };
    store.put_checkpoint(&checkpoint).await.unwrap();
    let retry = concierge_core::Checkpoint { node: "retrieve".into(), ..checkpoint.clone() };
    assert_conflict(store.put_checkpoint(&retry).await);
    assert_eq!(store.latest_checkpoint("run-7").await.unwrap(), Some(checkpoint));
}

async fn tool_calls_round_trip_and_are_listed_per_conversation(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let conversation = seed_conversation(&store, &acme).await;
    let first = tool_call(&conversation, "conv:1:1", 1);
    let second = concierge_core::ToolCallRecord {
        result: None,
        outcome: ToolCallOutcome::Timeout,
        approved_by: None,
        ..tool_call(&conversation, "conv:1:2", 2)
    };
    let unattached =
        concierge_core::ToolCallRecord { conversation_id: None, ..tool_call(&conversation, "nightly:1", 3) };
    for call in [&second, &first, &unattached] {
        store.record_tool_call(call).await.unwrap();
    }
    assert_eq!(store.tool_call("conv:1:2").await.unwrap(), Some(second.clone()));
    assert_eq!(store.tool_call("nightly:1").await.unwrap(), Some(unattached));
    assert_eq!(store.tool_call("conv:9:9").await.unwrap(), None);
    assert_eq!(store.tool_calls(&acme, conversation.id).await.unwrap(), vec![first, second]);
}

async fn a_reused_idempotency_key_is_a_conflict(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let conversation = seed_conversation(&store, &acme).await;
    store.record_tool_call(&tool_call(&conversation, "conv:1:1", 1)).await.unwrap();
    assert_conflict(store.record_tool_call(&tool_call(&conversation, "conv:1:1", 2)).await);
    assert_eq!(store.tool_calls(&acme, conversation.id).await.unwrap().len(), 1);
}

// ---- tickets and approvals --------------------------------------------------------------

async fn tickets_round_trip_filter_by_status_and_change_status(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let conversation = seed_conversation(&store, &acme).await;
    let older = concierge_core::Ticket {
        conversation_id: None,
        priority: TicketPriority::Low,
        external_ref: Some("ZD-1234".into()),
        ..ticket(&conversation, 1, TicketStatus::Open)
    };
    let newer = ticket(&conversation, 2, TicketStatus::Open);
    let solved = ticket(&conversation, 3, TicketStatus::Solved);
    for t in [&older, &newer, &solved] {
        store.create_ticket(t).await.unwrap();
    }
    assert_eq!(store.ticket(&acme, older.id).await.unwrap(), Some(older.clone()));
    assert_eq!(store.list_tickets(&acme, None, 10).await.unwrap(), vec![solved.clone(), newer.clone(), older.clone()]);
    assert_eq!(
        store.list_tickets(&acme, Some(TicketStatus::Open), 10).await.unwrap(),
        vec![newer.clone(), older.clone()]
    );
    assert_eq!(store.list_tickets(&acme, Some(TicketStatus::Open), 1).await.unwrap(), vec![newer.clone()]);

    store.set_ticket_status(&acme, newer.id, TicketStatus::Pending).await.unwrap();
    let stored = store.ticket(&acme, newer.id).await.unwrap().unwrap();
    assert_eq!(stored.status, TicketStatus::Pending);
    assert!(stored.updated_at > newer.updated_at);
    assert_eq!(store.list_tickets(&acme, Some(TicketStatus::Open), 10).await.unwrap(), vec![older]);
    assert_not_found(store.set_ticket_status(&acme, TicketId::new(), TicketStatus::Closed).await);
}

async fn an_approval_is_decided_once_and_then_leaves_the_pending_list(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let conversation = seed_conversation(&store, &acme).await;
    let refund = approval(&conversation, 1);
    let cancel = approval(&conversation, 2);
    store.create_approval(&cancel).await.unwrap();
    store.create_approval(&refund).await.unwrap();
    assert_eq!(store.approval(&acme, refund.id).await.unwrap(), Some(refund.clone()));
    assert_eq!(store.pending_approvals(&acme).await.unwrap(), vec![refund.clone(), cancel.clone()]);

    let decided = store.decide_approval(&acme, refund.id, true, "ops@acme", Some("loyal customer")).await.unwrap();
    assert_eq!(decided.status, ApprovalStatus::Approved);
    assert_eq!(decided.decided_by.as_deref(), Some("ops@acme"));
    assert_eq!(decided.reason.as_deref(), Some("loyal customer"));
    assert!(decided.decided_at.is_some());
    assert_eq!(store.approval(&acme, refund.id).await.unwrap(), Some(decided));
    assert_eq!(store.pending_approvals(&acme).await.unwrap(), vec![cancel.clone()]);

    assert_conflict(store.decide_approval(&acme, refund.id, false, "someone@acme", None).await);
    let denied = store.decide_approval(&acme, cancel.id, false, "ops@acme", None).await.unwrap();
    assert_eq!((denied.status, denied.reason), (ApprovalStatus::Denied, None));
    assert!(store.pending_approvals(&acme).await.unwrap().is_empty());
    assert_not_found(store.decide_approval(&acme, ApprovalId::new(), true, "ops@acme", None).await);
}

async fn an_approval_past_its_deadline_cannot_be_decided_and_is_marked_expired(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let conversation = seed_conversation(&store, &acme).await;
    // `at` is in 2025: long past.
    let lapsed = Approval { expires_at: Some(at(60)), ..approval(&conversation, 1) };
    let open = Approval { expires_at: Some(concierge_core::now() + Duration::hours(1)), ..approval(&conversation, 2) };
    store.create_approval(&lapsed).await.unwrap();
    store.create_approval(&open).await.unwrap();
    assert_conflict(store.decide_approval(&acme, lapsed.id, true, "ops@acme", None).await);
    let stored = store.approval(&acme, lapsed.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.decided_by), (ApprovalStatus::Expired, None));
    assert_eq!(stored.run_id, lapsed.run_id);
    let decided = store.decide_approval(&acme, open.id, true, "ops@acme", None).await.unwrap();
    assert_eq!(decided.status, ApprovalStatus::Approved);
    assert_eq!(store.pending_approvals(&acme).await.unwrap(), vec![]);
}

async fn concurrent_decisions_on_one_approval_let_exactly_one_win(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let conversation = seed_conversation(&store, &acme).await;
    let refund = approval(&conversation, 1);
    store.create_approval(&refund).await.unwrap();

    let deciders: Vec<_> = (0..10)
        .map(|i| {
            let (store, acme) = (Arc::clone(&store), acme.clone());
            tokio::spawn(async move {
                store.decide_approval(&acme, refund.id, i % 2 == 0, &format!("operator-{i}"), None).await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for decider in deciders {
        match decider.await.unwrap() {
            Ok(approval) => winners.push(approval),
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("a losing decider must get Conflict, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one decision wins: {winners:?}");
    assert_eq!(store.approval(&acme, refund.id).await.unwrap().as_ref(), winners.first());
}

// ---- feedback ---------------------------------------------------------------------------

async fn a_second_rating_of_a_message_replaces_the_first(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let conversation = seed_conversation(&store, &acme).await;
    let answer = store.append_message(new_message(&conversation, "Your refund is on its way.")).await.unwrap();
    let thumbs_up = Feedback {
        message_id: answer.id,
        tenant_id: acme.clone(),
        conversation_id: conversation.id,
        rating: 1,
        comment: None,
        created_at: at(100),
    };
    store.add_feedback(&thumbs_up).await.unwrap();
    assert_eq!(store.feedback(&acme, answer.id).await.unwrap(), Some(thumbs_up.clone()));

    let thumbs_down = Feedback { rating: -1, comment: Some("It was not.".into()), created_at: at(200), ..thumbs_up };
    store.add_feedback(&thumbs_down).await.unwrap();
    assert_eq!(store.feedback(&acme, answer.id).await.unwrap(), Some(thumbs_down.clone()));

    let unknown_message = Feedback { message_id: MessageId::new(), ..thumbs_down.clone() };
    assert_not_found(store.add_feedback(&unknown_message).await);

    let other = store.append_message(new_message(&conversation, "Anything else?")).await.unwrap();
    let later = Feedback { message_id: other.id, rating: 1, comment: None, created_at: at(300), ..thumbs_down.clone() };
    store.add_feedback(&later).await.unwrap();
    assert_eq!(store.list_feedback(&acme, 10).await.unwrap(), vec![later.clone(), thumbs_down]);
    assert_eq!(store.list_feedback(&acme, 1).await.unwrap(), vec![later]);
}

async fn a_message_is_read_back_by_id_within_its_tenant(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let globex = seed_tenant(&store, "globex").await;
    let conversation = seed_conversation(&store, &acme).await;
    let stored = store.append_message(new_message(&conversation, "Where is my parcel?")).await.unwrap();
    assert_eq!(store.message(&acme, stored.id).await.unwrap(), Some(stored.clone()));
    assert_eq!(store.message(&globex, stored.id).await.unwrap(), None);
    assert_eq!(store.message(&acme, MessageId::new()).await.unwrap(), None);
}

// ---- documents --------------------------------------------------------------------------

async fn documents_round_trip_with_their_chunks(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let returns = document(&acme, "returns-policy", 1);
    let shipping = concierge_core::Document { url: None, ..document(&acme, "shipping", 1) };
    let returns_chunks = chunks(&returns, &[2, 0, 1]);
    assert_eq!(store.upsert_document(&returns, &returns_chunks).await.unwrap(), returns.id);
    store.upsert_document(&shipping, &[]).await.unwrap();

    assert_eq!(store.document(&acme, "returns-policy").await.unwrap(), Some(returns.clone()));
    assert_eq!(store.document(&acme, "warranty").await.unwrap(), None);
    assert_eq!(store.documents(&acme).await.unwrap(), vec![returns.clone(), shipping.clone()]);
    assert_eq!(store.chunks(returns.id).await.unwrap(), chunks(&returns, &[0, 1, 2]));
    assert!(store.chunks(shipping.id).await.unwrap().is_empty());
}

async fn a_document_with_many_chunks_is_stored_whole(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let manual = document(&acme, "manual", 1);
    let ordinals: Vec<i64> = (0..1_201).collect();
    store.upsert_document(&manual, &chunks(&manual, &ordinals)).await.unwrap();
    assert_eq!(store.chunks(manual.id).await.unwrap(), chunks(&manual, &ordinals));
}

async fn reingesting_a_document_replaces_its_chunks_and_keeps_its_id(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let v1 = document(&acme, "returns-policy", 1);
    store.upsert_document(&v1, &chunks(&v1, &[0, 1, 2])).await.unwrap();

    let v2 = document(&acme, "returns-policy", 2);
    assert_ne!(v1.id, v2.id);
    let stored_id = store.upsert_document(&v2, &chunks(&v2, &[0, 1])).await.unwrap();
    assert_eq!(stored_id, v1.id);

    let stored = store.document(&acme, "returns-policy").await.unwrap().unwrap();
    assert_eq!(stored, concierge_core::Document { id: v1.id, ..v2.clone() });
    let expected: Vec<_> =
        chunks(&v2, &[0, 1]).into_iter().map(|c| concierge_core::Chunk { document_id: v1.id, ..c }).collect();
    assert_eq!(store.chunks(v1.id).await.unwrap(), expected);
    assert!(store.chunks(v2.id).await.unwrap().is_empty());
    assert_eq!(store.documents(&acme).await.unwrap().len(), 1);
}

async fn a_failed_document_upsert_leaves_the_previous_version_intact(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let v1 = document(&acme, "returns-policy", 1);
    store.upsert_document(&v1, &chunks(&v1, &[0, 1, 2])).await.unwrap();

    // Two chunks with ordinal 1: the last insert of the transaction fails.
    let v2 = concierge_core::Document { id: v1.id, ..document(&acme, "returns-policy", 2) };
    assert_conflict(store.upsert_document(&v2, &chunks(&v2, &[0, 1, 1])).await);

    assert_eq!(store.document(&acme, "returns-policy").await.unwrap(), Some(v1.clone()));
    assert_eq!(store.chunks(v1.id).await.unwrap(), chunks(&v1, &[0, 1, 2]));

    let stray = chunks(&document(&acme, "other", 1), &[0]);
    assert!(matches!(store.upsert_document(&v2, &stray).await, Err(StoreError::Other(_))));
}

async fn deleting_a_document_removes_its_chunks(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let globex = seed_tenant(&store, "globex").await;
    let doc = document(&acme, "returns-policy", 1);
    store.upsert_document(&doc, &chunks(&doc, &[0, 1])).await.unwrap();

    assert!(!store.delete_document(&globex, "returns-policy").await.unwrap());
    assert_eq!(store.chunks(doc.id).await.unwrap().len(), 2);

    assert!(store.delete_document(&acme, "returns-policy").await.unwrap());
    assert_eq!(store.document(&acme, "returns-policy").await.unwrap(), None);
    assert!(store.chunks(doc.id).await.unwrap().is_empty());
    assert!(!store.delete_document(&acme, "returns-policy").await.unwrap());
}

// ---- jobs -------------------------------------------------------------------------------

async fn jobs_are_claimed_by_priority_then_age(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let low_old = job(&acme, 0, 1);
    let high_new = job(&acme, 5, 3);
    let high_old = job(&acme, 5, 2);
    for j in [&low_old, &high_new, &high_old] {
        store.enqueue_job(j).await.unwrap();
    }
    assert_eq!(store.job(&acme, low_old.id).await.unwrap(), Some(low_old.clone()));

    let first = store.claim_job("worker-1").await.unwrap().unwrap();
    assert_eq!(first.id, high_old.id);
    assert_eq!((first.state, first.attempts, first.claimed_by.as_deref()), (JobState::Running, 1, Some("worker-1")));
    assert_eq!(store.job(&acme, first.id).await.unwrap(), Some(first));

    assert_eq!(store.claim_job("worker-2").await.unwrap().unwrap().id, high_new.id);
    assert_eq!(store.claim_job("worker-1").await.unwrap().unwrap().id, low_old.id);
    assert_eq!(store.claim_job("worker-1").await.unwrap(), None);
}

async fn concurrent_claimers_never_share_a_job(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let mut queued = HashSet::new();
    for i in 0..10 {
        let j = job(&acme, (i % 3) as i32, i);
        store.enqueue_job(&j).await.unwrap();
        queued.insert(j.id);
    }
    let claimers: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                while let Some(job) = store.claim_job(&format!("worker-{i}")).await.expect("claiming never fails") {
                    claimed.push(job);
                }
                claimed
            })
        })
        .collect();
    let mut claimed: Vec<concierge_core::Job> = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.unwrap());
    }
    assert_eq!(claimed.len(), 10, "each job is claimed exactly once");
    assert_eq!(claimed.iter().map(|j| j.id).collect::<HashSet<JobId>>(), queued);
    assert!(claimed.iter().all(|j| j.attempts == 1 && j.state == JobState::Running));
}

async fn a_failed_job_is_requeued_only_when_retried(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let flaky = job(&acme, 0, 1);
    store.enqueue_job(&flaky).await.unwrap();

    store.claim_job("worker-1").await.unwrap().unwrap();
    store.fail_job(flaky.id, "helpdesk timed out", true).await.unwrap();
    let requeued = store.job(&acme, flaky.id).await.unwrap().unwrap();
    assert_eq!((requeued.state, requeued.attempts), (JobState::Queued, 1));
    assert_eq!(requeued.error.as_deref(), Some("helpdesk timed out"));

    assert_eq!(store.claim_job("worker-2").await.unwrap().unwrap().attempts, 2);
    store.fail_job(flaky.id, "helpdesk rejected the payload", false).await.unwrap();
    assert_eq!(store.job(&acme, flaky.id).await.unwrap().unwrap().state, JobState::Failed);
    assert_eq!(store.claim_job("worker-1").await.unwrap(), None);
    assert_conflict(store.complete_job(flaky.id, &json!({})).await);
    assert_not_found(store.complete_job(JobId::new(), &json!({})).await);

    let steady = job(&acme, 0, 2);
    store.enqueue_job(&steady).await.unwrap();
    store.claim_job("worker-1").await.unwrap().unwrap();
    store.complete_job(steady.id, &json!({ "documents": 12 })).await.unwrap();
    let done = store.job(&acme, steady.id).await.unwrap().unwrap();
    assert_eq!((done.state, done.result, done.error), (JobState::Succeeded, Some(json!({ "documents": 12 })), None));
    assert_conflict(store.fail_job(steady.id, "late failure", true).await);
}

async fn a_job_is_taken_by_id_once_and_queued_jobs_are_listed_in_claim_order(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let low = job(&acme, 0, 1);
    let high = job(&acme, 5, 2);
    for j in [&low, &high] {
        store.enqueue_job(j).await.unwrap();
    }
    let queued: Vec<JobId> = store.queued_jobs(10).await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(queued, vec![high.id, low.id]);

    let taken = store.take_job(low.id, "worker-1").await.unwrap().unwrap();
    assert_eq!((taken.state, taken.attempts, taken.claimed_by.as_deref()), (JobState::Running, 1, Some("worker-1")));
    assert_eq!(store.take_job(low.id, "worker-2").await.unwrap(), None, "a running job is not taken again");
    assert_eq!(store.take_job(JobId::new(), "worker-2").await.unwrap(), None);
    let queued: Vec<JobId> = store.queued_jobs(10).await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(queued, vec![high.id]);
}

async fn stale_running_jobs_are_requeued(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let orphan = job(&acme, 0, 1);
    store.enqueue_job(&orphan).await.unwrap();
    store.claim_job("worker-that-dies").await.unwrap().unwrap();

    assert_eq!(store.requeue_stale_jobs(now() - Duration::hours(1)).await.unwrap(), 0);
    assert_eq!(store.requeue_stale_jobs(now() + Duration::seconds(1)).await.unwrap(), 1);
    assert_eq!(store.job(&acme, orphan.id).await.unwrap().unwrap().state, JobState::Queued);
    let reclaimed = store.claim_job("worker-2").await.unwrap().unwrap();
    assert_eq!((reclaimed.id, reclaimed.attempts), (orphan.id, 2));
}

// ---- usage ------------------------------------------------------------------------------

async fn usage_summary_adds_up_calls_since_a_time(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let globex = seed_tenant(&store, "globex").await;
    let conversation = seed_conversation(&store, &acme).await;
    store.record_usage(&usage(&acme, 0, 1_000)).await.unwrap();
    store.record_usage(&usage(&acme, 60, 2_000)).await.unwrap();
    let attached = concierge_core::UsageRecord { conversation_id: Some(conversation.id), ..usage(&acme, 120, 4_000) };
    store.record_usage(&attached).await.unwrap();
    store.record_usage(&usage(&globex, 60, 8_000)).await.unwrap();

    let summary = store.usage_summary(&acme, at(60)).await.unwrap();
    assert_eq!(summary, UsageSummary { calls: 2, prompt_tokens: 6_000, completion_tokens: 3_000, cost_micros: 18_000 });
    assert_eq!(store.usage_summary(&acme, at(0)).await.unwrap().calls, 3);
    assert_eq!(store.usage_summary(&acme, at(121)).await.unwrap(), UsageSummary::default());
}

// ---- cross-cutting ----------------------------------------------------------------------

async fn reads_and_writes_with_another_tenant_see_nothing(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    let globex = seed_tenant(&store, "globex").await;
    let conversation = seed_conversation(&store, &acme).await;
    let message = store.append_message(new_message(&conversation, "hi")).await.unwrap();
    let t = ticket(&conversation, 1, TicketStatus::Open);
    store.create_ticket(&t).await.unwrap();
    let a = approval(&conversation, 1);
    store.create_approval(&a).await.unwrap();
    store.record_tool_call(&tool_call(&conversation, "conv:1:1", 1)).await.unwrap();
    let doc = document(&acme, "returns-policy", 1);
    store.upsert_document(&doc, &chunks(&doc, &[0])).await.unwrap();
    let j = job(&acme, 0, 1);
    store.enqueue_job(&j).await.unwrap();
    store.record_usage(&usage(&acme, 1, 100)).await.unwrap();
    let rating = Feedback {
        message_id: message.id,
        tenant_id: acme.clone(),
        conversation_id: conversation.id,
        rating: 1,
        comment: None,
        created_at: at(2),
    };
    store.add_feedback(&rating).await.unwrap();

    assert_eq!(store.conversation(&globex, conversation.id).await.unwrap(), None);
    assert!(store.list_conversations(&globex, 10, None).await.unwrap().is_empty());
    assert!(store.messages(&globex, conversation.id).await.unwrap().is_empty());
    assert!(store.tool_calls(&globex, conversation.id).await.unwrap().is_empty());
    assert_eq!(store.ticket(&globex, t.id).await.unwrap(), None);
    assert!(store.list_tickets(&globex, None, 10).await.unwrap().is_empty());
    assert_eq!(store.approval(&globex, a.id).await.unwrap(), None);
    assert!(store.pending_approvals(&globex).await.unwrap().is_empty());
    assert_eq!(store.feedback(&globex, message.id).await.unwrap(), None);
    assert_eq!(store.document(&globex, "returns-policy").await.unwrap(), None);
    assert!(store.documents(&globex).await.unwrap().is_empty());
    assert_eq!(store.job(&globex, j.id).await.unwrap(), None);
    assert_eq!(store.usage_summary(&globex, at(0)).await.unwrap(), UsageSummary::default());

    assert_not_found(store.set_conversation_status(&globex, conversation.id, ConversationStatus::Closed).await);
    assert_not_found(store.set_ticket_status(&globex, t.id, TicketStatus::Closed).await);
    assert_not_found(store.decide_approval(&globex, a.id, true, "intruder", None).await);
    assert_not_found(store.add_feedback(&Feedback { tenant_id: globex.clone(), rating: -1, ..rating.clone() }).await);
    let foreign_ticket =
        concierge_core::Ticket { tenant_id: globex.clone(), ..ticket(&conversation, 2, TicketStatus::Open) };
    assert_not_found(store.create_ticket(&foreign_ticket).await);
    assert!(!store.delete_document(&globex, "returns-policy").await.unwrap());

    // Acme's records are untouched.
    assert_eq!(store.conversation(&acme, conversation.id).await.unwrap().unwrap().status, ConversationStatus::Open);
    assert_eq!(store.approval(&acme, a.id).await.unwrap().unwrap().status, ApprovalStatus::Pending);
    assert_eq!(store.feedback(&acme, message.id).await.unwrap(), Some(rating));
}

async fn timestamps_are_kept_to_the_microsecond(store: Arc<dyn Store>) {
    let precise = Utc.timestamp_opt(1_740_000_000, 123_456_789).unwrap();
    let acme = concierge_core::Tenant { created_at: precise, ..tenant("acme") };
    store.upsert_tenant(&acme).await.unwrap();
    let stored = store.tenant(&acme.id).await.unwrap().unwrap();
    assert_eq!(stored.created_at, Utc.timestamp_opt(1_740_000_000, 123_456_000).unwrap());
}

async fn migrating_twice_is_a_no_op(store: Arc<dyn Store>) {
    let acme = seed_tenant(&store, "acme").await;
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert!(store.tenant(&acme).await.unwrap().is_some());
}

async fn concurrent_migrations_all_succeed(store: Arc<dyn Store>) {
    // Open pooled connections first, so the migrators overlap instead of queueing behind
    // connection set-up; each runs on a connection (a session) of its own.
    futures::future::try_join_all((0..8).map(|_| store.ping())).await.unwrap();
    let migrators: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    for migrator in migrators {
        migrator.await.unwrap().expect("every concurrent migration succeeds");
    }
    let acme = seed_tenant(&store, "acme").await;
    assert!(store.tenant(&acme).await.unwrap().is_some());
}

async fn the_store_answers_ping_until_closed(store: Arc<dyn Store>) {
    assert!(matches!(store.backend(), "sqlite" | "postgres"));
    store.ping().await.unwrap();
    store.close().await;
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
}

store_tests! {
    Migrated: [
        tenants_round_trip_and_an_upsert_keeps_created_at,
        api_keys_round_trip_and_revocation_keeps_the_first_time,
        a_duplicate_api_key_prefix_is_a_conflict,
        conversations_round_trip_and_a_status_change_bumps_updated_at,
        conversations_are_listed_newest_first_and_paged_with_before,
        appended_messages_are_numbered_from_one_and_read_back_in_order,
        concurrent_appends_get_consecutive_sequence_numbers,
        appending_to_an_unknown_conversation_is_not_found,
        the_latest_checkpoint_is_the_one_with_the_highest_step,
        a_second_checkpoint_for_the_same_step_is_a_conflict,
        tool_calls_round_trip_and_are_listed_per_conversation,
        a_reused_idempotency_key_is_a_conflict,
        tickets_round_trip_filter_by_status_and_change_status,
        an_approval_is_decided_once_and_then_leaves_the_pending_list,
        an_approval_past_its_deadline_cannot_be_decided_and_is_marked_expired,
        concurrent_decisions_on_one_approval_let_exactly_one_win,
        a_second_rating_of_a_message_replaces_the_first,
        a_message_is_read_back_by_id_within_its_tenant,
        documents_round_trip_with_their_chunks,
        a_document_with_many_chunks_is_stored_whole,
        reingesting_a_document_replaces_its_chunks_and_keeps_its_id,
        a_failed_document_upsert_leaves_the_previous_version_intact,
        deleting_a_document_removes_its_chunks,
        jobs_are_claimed_by_priority_then_age,
        concurrent_claimers_never_share_a_job,
        a_failed_job_is_requeued_only_when_retried,
        a_job_is_taken_by_id_once_and_queued_jobs_are_listed_in_claim_order,
        stale_running_jobs_are_requeued,
        usage_summary_adds_up_calls_since_a_time,
        reads_and_writes_with_another_tenant_see_nothing,
        timestamps_are_kept_to_the_microsecond,
        migrating_twice_is_a_no_op,
        the_store_answers_ping_until_closed,
    ],
    Empty: [
        concurrent_migrations_all_succeed,
    ],
}

// ---- independent of the backend ---------------------------------------------------------

#[tokio::test]
async fn open_rejects_an_unknown_url_scheme_without_echoing_the_url() {
    let err =
        concierge_store::open("mysql://root:hunter2@db:3306/concierge").await.err().expect("mysql is not supported");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert!(text.contains("`mysql`") && text.contains("sqlite:") && text.contains("postgres://"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_in_memory_sqlite_store_keeps_its_data_across_connections() {
    let store = concierge_store::open("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let acme = seed_tenant(&store, "acme").await;
    let conversation = seed_conversation(&store, &acme).await;
    let writers: Vec<_> = (0..10)
        .map(|i| {
            let store = Arc::clone(&store);
            let message = new_message(&conversation, &format!("message {i}"));
            tokio::spawn(async move { store.append_message(message).await })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    assert_eq!(store.messages(&acme, conversation.id).await.unwrap().len(), 10);
}

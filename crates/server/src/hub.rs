//! Who is watching which conversation: every message stored in a conversation is told to
//! the clients following it (`GET /v1/conversations/{id}/events`), so a reply that comes
//! later — after an operator's approval, from a background job — reaches the customer's
//! page without a reload.
//!
//! One broadcast channel per followed conversation, made by its first follower and dropped
//! with its last, so a message wakes only its own conversation's followers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use concierge_core::{ConversationId, Message};
use tokio::sync::broadcast;

/// Messages held for a follower that reads slowly; one further behind misses the oldest and
/// is told how many (it can read the transcript).
const BACKLOG: usize = 64;

#[derive(Debug, Default)]
pub struct Hub {
    channels: Mutex<HashMap<ConversationId, broadcast::Sender<Arc<Message>>>>,
}

/// A follower of one conversation; leaving (drop) lets the hub forget the conversation.
pub struct Follower {
    hub: Arc<Hub>,
    conversation: ConversationId,
    pub receiver: broadcast::Receiver<Arc<Message>>,
}

impl Hub {
    pub fn follow(self: &Arc<Self>, conversation: ConversationId) -> Follower {
        let mut channels = self.lock();
        let sender = channels.entry(conversation).or_insert_with(|| broadcast::channel(BACKLOG).0);
        Follower { hub: Arc::clone(self), conversation, receiver: sender.subscribe() }
    }

    /// Tells the conversation's followers, if any.
    pub fn tell(&self, message: &Message) {
        if let Some(sender) = self.lock().get(&message.conversation_id) {
            let _ = sender.send(Arc::new(message.clone()));
        }
    }

    /// Conversations followed now.
    pub fn followed(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, broadcast::Sender<Arc<Message>>>> {
        self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let mut channels = self.hub.lock();
        // This follower's receiver is still alive here, hence 1.
        if channels.get(&self.conversation).is_some_and(|s| s.receiver_count() <= 1) {
            channels.remove(&self.conversation);
        }
    }
}

#[cfg(test)]
mod tests {
    use concierge_core::{MessageId, Role, TenantId};
    use serde_json::json;

    use super::*;

    fn message(conversation: ConversationId, content: &str) -> Message {
        Message {
            id: MessageId::new(),
            conversation_id: conversation,
            tenant_id: TenantId::try_from("acme".to_owned()).unwrap(),
            seq: 1,
            role: Role::Assistant,
            content: content.into(),
            metadata: json!({}),
            created_at: concierge_core::now(),
        }
    }

    #[tokio::test]
    async fn followers_hear_their_own_conversation_only() {
        let hub = Arc::new(Hub::default());
        let (ours, theirs) = (ConversationId::new(), ConversationId::new());
        let mut first = hub.follow(ours);
        let mut second = hub.follow(ours);
        let mut other = hub.follow(theirs);
        hub.tell(&message(ours, "Your refund was approved."));
        assert_eq!(first.receiver.recv().await.unwrap().content, "Your refund was approved.");
        assert_eq!(second.receiver.recv().await.unwrap().content, "Your refund was approved.");
        assert!(other.receiver.try_recv().is_err());
    }

    #[tokio::test]
    async fn the_last_follower_leaving_forgets_the_conversation() {
        let hub = Arc::new(Hub::default());
        let conversation = ConversationId::new();
        let first = hub.follow(conversation);
        let second = hub.follow(conversation);
        drop(first);
        assert_eq!(hub.followed(), 1);
        drop(second);
        assert_eq!(hub.followed(), 0);
        hub.tell(&message(conversation, "nobody hears this"));
    }
}

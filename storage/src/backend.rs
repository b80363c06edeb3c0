//! The one implementation of [`Store`]: each method packs its arguments into a request (plain
//! data) and hands it to the [`Backend`]. A backend implements each operation once, on whole
//! requests, so the backends share no argument plumbing, only this trait.

use async_trait::async_trait;
use confab_protocol::rest::{
    Conversation, ConversationSummary, Member, Message, MessagePage, Role,
};

use crate::rules::Creation;
use crate::user_events::UserEventPage;
use confab_protocol::Millis;

use crate::{
    Appended, MediaFile, NewConversation, NewMediaFile, NewMessage, PageQuery, PendingAppend,
    Person, RecentQuery, Result, Store, StoredEvent,
};

/// Who reads (or moves a read marker), in which tenant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub tenant: &'a str,
    pub user: &'a str,
}

impl Reader<'_> {
    /// Tenant and user, owned (for work sent to another thread).
    pub(crate) fn owned(self) -> (String, String) {
        (self.tenant.to_owned(), self.user.to_owned())
    }
}

/// A change by `by` to conversation `id`: its title and/or archived state.
#[derive(Debug, Clone)]
pub(crate) struct ConversationChange {
    pub tenant: String,
    pub by: String,
    pub id: String,
    pub title: Option<String>,
    pub archived: Option<bool>,
}

/// A change by `by` to `user`'s membership of `conversation`.
#[derive(Debug, Clone)]
pub(crate) struct MemberChange {
    pub tenant: String,
    pub by: String,
    pub conversation: String,
    pub user: String,
}

impl MemberChange {
    /// Tenant, by, conversation and user.
    pub(crate) fn parts(&self) -> (&str, &str, &str, &str) {
        (&self.tenant, &self.by, &self.conversation, &self.user)
    }
}

/// A change by `by` to message `id`.
#[derive(Debug, Clone)]
pub(crate) struct MessageChange {
    pub tenant: String,
    pub by: String,
    pub id: String,
}

/// Which durable events to read: those of `conversation` after `after`, at most `limit`, for
/// `user` (a member), or with no membership check (`None`: the server's own use).
#[derive(Debug, Clone)]
pub(crate) struct EventsQuery {
    pub tenant: String,
    pub user: Option<String>,
    pub conversation: String,
    pub after: u64,
    pub limit: u32,
}

/// A sighting of `user` of `tenant` under `name` at `seen_at` (for the directory of people,
/// see [`crate::Store::record_people`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub tenant: String,
    pub user: String,
    pub name: String,
    pub seen_at: Millis,
}

/// A search of `query` by `user` of `tenant` at `at` (for their recent queries).
#[derive(Debug, Clone)]
pub(crate) struct Searched {
    pub tenant: String,
    pub user: String,
    pub query: String,
    pub at: Millis,
}

/// Events and the conversation's last seq, read together.
pub(crate) type Events = (Vec<StoredEvent>, u64);

/// What a storage backend implements; [`Store`] comes with it. Each operation means what the
/// [`Store`] method of the same name says. (Futures are `Send` so that the one `Store`
/// implementation, boxed by `async_trait`, may hold them.)
pub(crate) trait Backend: Send + Sync + 'static {
    fn create_conversation(
        &self,
        new: Creation,
    ) -> impl Future<Output = Result<(Conversation, bool)>> + Send;
    fn conversation(
        &self,
        reader: Reader<'_>,
        id: &str,
    ) -> impl Future<Output = Result<Conversation>> + Send;
    fn list_conversations(
        &self,
        reader: Reader<'_>,
    ) -> impl Future<Output = Result<Vec<ConversationSummary>>> + Send;
    fn update_conversation(
        &self,
        change: ConversationChange,
    ) -> impl Future<Output = Result<Option<u64>>> + Send;
    /// `reader.user`'s own membership.
    fn member(
        &self,
        reader: Reader<'_>,
        conversation: &str,
    ) -> impl Future<Output = Result<Option<Member>>> + Send;
    fn members(
        &self,
        reader: Reader<'_>,
        conversation: &str,
    ) -> impl Future<Output = Result<Vec<Member>>> + Send;
    fn add_member(
        &self,
        change: MemberChange,
        role: Role,
    ) -> impl Future<Output = Result<u64>> + Send;
    fn remove_member(&self, change: MemberChange) -> impl Future<Output = Result<u64>> + Send;
    fn set_role(
        &self,
        change: MemberChange,
        role: Role,
    ) -> impl Future<Output = Result<Option<u64>>> + Send;
    fn append_message(&self, new: NewMessage) -> impl Future<Output = Result<Appended>> + Send;

    /// Appends inline unless the backend queues.
    #[allow(
        clippy::async_yields_async,
        reason = "the outcome is a future by design: the place in line, then the result"
    )]
    fn queue_message(&self, new: NewMessage) -> impl Future<Output = PendingAppend> + Send {
        async move {
            let outcome = self.append_message(new).await;
            let pending: PendingAppend = Box::pin(std::future::ready(outcome));
            pending
        }
    }

    fn message(&self, reader: Reader<'_>, id: &str)
    -> impl Future<Output = Result<Message>> + Send;
    fn edit_message(
        &self,
        change: MessageChange,
        body: String,
    ) -> impl Future<Output = Result<u64>> + Send;
    fn delete_message(
        &self,
        change: MessageChange,
    ) -> impl Future<Output = Result<Option<u64>>> + Send;
    fn add_reaction(
        &self,
        change: MessageChange,
        emoji: String,
    ) -> impl Future<Output = Result<Option<u64>>> + Send;
    fn remove_reaction(
        &self,
        change: MessageChange,
        emoji: String,
    ) -> impl Future<Output = Result<Option<u64>>> + Send;
    fn messages(
        &self,
        reader: Reader<'_>,
        id: &str,
        page: PageQuery,
    ) -> impl Future<Output = Result<MessagePage>> + Send;
    fn events(&self, query: EventsQuery) -> impl Future<Output = Result<Events>> + Send;
    fn mark_read(
        &self,
        reader: Reader<'_>,
        id: &str,
        seq: u64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// `reader.user`'s own events.
    fn user_events(
        &self,
        reader: Reader<'_>,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<UserEventPage>> + Send;
    fn create_media(&self, new: NewMediaFile) -> impl Future<Output = Result<MediaFile>> + Send;
    fn media(&self, reader: Reader<'_>, id: &str)
    -> impl Future<Output = Result<MediaFile>> + Send;
    fn media_file(&self, tenant: &str, id: &str) -> impl Future<Output = Result<MediaFile>> + Send;
    /// Deleted by `reader.user`.
    fn delete_media(
        &self,
        reader: Reader<'_>,
        id: &str,
    ) -> impl Future<Output = Result<MediaFile>> + Send;
    /// Attached by `reader.user`.
    fn attach_media(
        &self,
        reader: Reader<'_>,
        conversation: &str,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<MediaFile>>> + Send;
    fn count_download(&self, tenant: &str, id: &str) -> impl Future<Output = Result<()>> + Send;
    fn media_usage(&self, tenant: &str) -> impl Future<Output = Result<u64>> + Send;
    fn conversation_positions(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, String, u64)>>> + Send;
    fn record_people(&self, sightings: Vec<Sighting>) -> impl Future<Output = Result<()>> + Send;
    fn people(&self, tenant: &str) -> impl Future<Output = Result<Vec<Person>>> + Send;
    fn record_query(&self, searched: Searched) -> impl Future<Output = Result<()>> + Send;
    fn recent_queries(
        &self,
        reader: Reader<'_>,
    ) -> impl Future<Output = Result<Vec<RecentQuery>>> + Send;
    fn clear_recent_queries(&self, reader: Reader<'_>) -> impl Future<Output = Result<()>> + Send;
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
    fn close(&self) -> impl Future<Output = Result<()>> + Send;
}

fn member_change(tenant: &str, by: &str, conversation: &str, user: &str) -> MemberChange {
    MemberChange {
        tenant: tenant.to_owned(),
        by: by.to_owned(),
        conversation: conversation.to_owned(),
        user: user.to_owned(),
    }
}

fn message_change(tenant: &str, by: &str, id: &str) -> MessageChange {
    MessageChange {
        tenant: tenant.to_owned(),
        by: by.to_owned(),
        id: id.to_owned(),
    }
}

#[async_trait]
impl<B: Backend> Store for B {
    async fn create_conversation(&self, new: NewConversation) -> Result<(Conversation, bool)> {
        Backend::create_conversation(self, Creation::validate(new)?).await
    }

    async fn conversation(&self, tenant: &str, user: &str, id: &str) -> Result<Conversation> {
        Backend::conversation(self, Reader { tenant, user }, id).await
    }

    async fn list_conversations(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<Vec<ConversationSummary>> {
        Backend::list_conversations(self, Reader { tenant, user }).await
    }

    async fn update_conversation(
        &self,
        tenant: &str,
        by: &str,
        id: &str,
        title: Option<String>,
        archived: Option<bool>,
    ) -> Result<Option<u64>> {
        let change = ConversationChange {
            tenant: tenant.to_owned(),
            by: by.to_owned(),
            id: id.to_owned(),
            title,
            archived,
        };
        Backend::update_conversation(self, change).await
    }

    async fn member(&self, tenant: &str, conversation: &str, user: &str) -> Result<Option<Member>> {
        Backend::member(self, Reader { tenant, user }, conversation).await
    }

    async fn members(&self, tenant: &str, by: &str, conversation: &str) -> Result<Vec<Member>> {
        Backend::members(self, Reader { tenant, user: by }, conversation).await
    }

    async fn add_member(
        &self,
        tenant: &str,
        by: &str,
        conversation: &str,
        user: &str,
        role: Role,
    ) -> Result<u64> {
        let change = member_change(tenant, by, conversation, user);
        Backend::add_member(self, change, role).await
    }

    async fn remove_member(
        &self,
        tenant: &str,
        by: &str,
        conversation: &str,
        user: &str,
    ) -> Result<u64> {
        Backend::remove_member(self, member_change(tenant, by, conversation, user)).await
    }

    async fn set_role(
        &self,
        tenant: &str,
        by: &str,
        conversation: &str,
        user: &str,
        role: Role,
    ) -> Result<Option<u64>> {
        let change = member_change(tenant, by, conversation, user);
        Backend::set_role(self, change, role).await
    }

    async fn append_message(&self, new: NewMessage) -> Result<Appended> {
        Backend::append_message(self, new).await
    }

    async fn queue_message(&self, new: NewMessage) -> PendingAppend {
        Backend::queue_message(self, new).await
    }

    async fn message(&self, tenant: &str, user: &str, id: &str) -> Result<Message> {
        Backend::message(self, Reader { tenant, user }, id).await
    }

    async fn edit_message(&self, tenant: &str, by: &str, id: &str, body: String) -> Result<u64> {
        Backend::edit_message(self, message_change(tenant, by, id), body).await
    }

    async fn delete_message(&self, tenant: &str, by: &str, id: &str) -> Result<Option<u64>> {
        Backend::delete_message(self, message_change(tenant, by, id)).await
    }

    async fn add_reaction(
        &self,
        tenant: &str,
        by: &str,
        id: &str,
        emoji: &str,
    ) -> Result<Option<u64>> {
        let change = message_change(tenant, by, id);
        Backend::add_reaction(self, change, emoji.to_owned()).await
    }

    async fn remove_reaction(
        &self,
        tenant: &str,
        by: &str,
        id: &str,
        emoji: &str,
    ) -> Result<Option<u64>> {
        let change = message_change(tenant, by, id);
        Backend::remove_reaction(self, change, emoji.to_owned()).await
    }

    async fn messages(
        &self,
        tenant: &str,
        user: &str,
        conversation: &str,
        query: PageQuery,
    ) -> Result<MessagePage> {
        Backend::messages(self, Reader { tenant, user }, conversation, query).await
    }

    async fn events_after(
        &self,
        tenant: &str,
        user: &str,
        conversation: &str,
        after: u64,
        limit: u32,
    ) -> Result<Events> {
        let query = EventsQuery {
            tenant: tenant.to_owned(),
            user: Some(user.to_owned()),
            conversation: conversation.to_owned(),
            after,
            limit,
        };
        Backend::events(self, query).await
    }

    async fn conversation_events(
        &self,
        tenant: &str,
        conversation: &str,
        after: u64,
        limit: u32,
    ) -> Result<Events> {
        let query = EventsQuery {
            tenant: tenant.to_owned(),
            user: None,
            conversation: conversation.to_owned(),
            after,
            limit,
        };
        Backend::events(self, query).await
    }

    async fn mark_read(
        &self,
        tenant: &str,
        user: &str,
        conversation: &str,
        seq: u64,
    ) -> Result<bool> {
        Backend::mark_read(self, Reader { tenant, user }, conversation, seq).await
    }

    async fn user_events(
        &self,
        tenant: &str,
        user: &str,
        after: u64,
        limit: u32,
    ) -> Result<UserEventPage> {
        Backend::user_events(self, Reader { tenant, user }, after, limit).await
    }

    async fn create_media(&self, new: NewMediaFile) -> Result<MediaFile> {
        Backend::create_media(self, new).await
    }

    async fn conversation_positions(&self) -> Result<Vec<(String, String, u64)>> {
        Backend::conversation_positions(self).await
    }

    async fn media(&self, tenant: &str, user: &str, id: &str) -> Result<MediaFile> {
        Backend::media(self, Reader { tenant, user }, id).await
    }

    async fn media_file(&self, tenant: &str, id: &str) -> Result<MediaFile> {
        Backend::media_file(self, tenant, id).await
    }

    async fn delete_media(&self, tenant: &str, by: &str, id: &str) -> Result<MediaFile> {
        Backend::delete_media(self, Reader { tenant, user: by }, id).await
    }

    async fn attach_media(
        &self,
        tenant: &str,
        by: &str,
        conversation: &str,
        ids: &[String],
    ) -> Result<Vec<MediaFile>> {
        let reader = Reader { tenant, user: by };
        Backend::attach_media(self, reader, conversation, ids).await
    }

    async fn count_download(&self, tenant: &str, id: &str) -> Result<()> {
        Backend::count_download(self, tenant, id).await
    }

    async fn media_usage(&self, tenant: &str) -> Result<u64> {
        Backend::media_usage(self, tenant).await
    }

    async fn record_people(&self, sightings: Vec<Sighting>) -> Result<()> {
        if sightings.is_empty() {
            return Ok(());
        }
        Backend::record_people(self, sightings).await
    }

    async fn people(&self, tenant: &str) -> Result<Vec<Person>> {
        Backend::people(self, tenant).await
    }

    async fn record_query(&self, tenant: &str, user: &str, query: &str, at: Millis) -> Result<()> {
        let searched = Searched {
            tenant: tenant.to_owned(),
            user: user.to_owned(),
            query: query.to_owned(),
            at,
        };
        Backend::record_query(self, searched).await
    }

    async fn recent_queries(&self, tenant: &str, user: &str) -> Result<Vec<RecentQuery>> {
        Backend::recent_queries(self, Reader { tenant, user }).await
    }

    async fn clear_recent_queries(&self, tenant: &str, user: &str) -> Result<()> {
        Backend::clear_recent_queries(self, Reader { tenant, user }).await
    }

    async fn ping(&self) -> Result<()> {
        Backend::ping(self).await
    }

    async fn close(&self) -> Result<()> {
        Backend::close(self).await
    }
}

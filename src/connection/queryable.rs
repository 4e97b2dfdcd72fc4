//! What can be sent on the multiplexed command connection: a command, a pipeline or a script
//! invocation, each with its own way of sending itself.

use redis::{FromRedisValue, RedisError};

use super::topology::AnyConn;

/// Something that can be sent on a multiplexed connection: a command or a pipeline.
pub trait Queryable: Sync {
    /// Sends it and parses the reply.
    fn send<T: FromRedisValue + Send>(
        &self,
        conn: &mut AnyConn,
    ) -> impl std::future::Future<Output = std::result::Result<T, RedisError>> + Send;
}

impl Queryable for redis::Cmd {
    fn send<T: FromRedisValue + Send>(
        &self,
        conn: &mut AnyConn,
    ) -> impl std::future::Future<Output = std::result::Result<T, RedisError>> + Send {
        self.query_async(conn)
    }
}

impl Queryable for redis::Pipeline {
    fn send<T: FromRedisValue + Send>(
        &self,
        conn: &mut AnyConn,
    ) -> impl std::future::Future<Output = std::result::Result<T, RedisError>> + Send {
        self.query_async(conn)
    }
}

impl Queryable for redis::ScriptInvocation<'_> {
    fn send<T: FromRedisValue + Send>(
        &self,
        conn: &mut AnyConn,
    ) -> impl std::future::Future<Output = std::result::Result<T, RedisError>> + Send {
        self.invoke_async(conn)
    }
}

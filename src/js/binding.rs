//! The loop registry: which JavaScript delivery loops of a client run, and what each belongs
//! to, shared by the client and its `Subscription` handles.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use napi::bindgen_prelude::*;

use super::deliveries::Deliveries;
use super::env_data;
use crate::client::Client;
use crate::subscribe::SubscriptionId;

/// What a JavaScript delivery loop belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Owner {
    /// A subscription: its stream and its id in the core.
    Subscription(String, SubscriptionId),
    /// A consumer.
    Consumer(crate::group::ConsumerKey),
}

/// The binding's state shared by a client and its `Subscription` handles (JavaScript thread
/// only).
pub(super) struct Binding {
    pub(super) inner: Arc<Client>,
    /// The running JavaScript delivery loops, by key.
    pub(super) loops: RefCell<HashMap<u32, Owner>>,
    pub(super) next_key: RefCell<u32>,
    /// Created with the first loop.
    pub(super) deliveries: RefCell<Option<Deliveries>>,
}

impl Binding {
    /// The delivery hub, created on first use.
    pub(super) fn deliveries<'a>(&'a self, env: &Env) -> Result<std::cell::Ref<'a, Deliveries>> {
        if self.deliveries.borrow().is_none() {
            let d = Deliveries::new(env, &env_data(env)?.runtime)?;
            *self.deliveries.borrow_mut() = Some(d);
        }
        Ok(std::cell::Ref::map(self.deliveries.borrow(), |d| {
            d.as_ref().expect("created above")
        }))
    }

    pub(super) fn new_key(&self) -> u32 {
        let mut k = self.next_key.borrow_mut();
        *k = k.wrapping_add(1);
        *k
    }

    /// Stops the loops `which` selects: no callback starts in them afterwards.
    pub(super) fn stop_loops(&self, env: &Env, which: impl Fn(&Owner) -> bool) -> Result<()> {
        let keys: Vec<u32> = self
            .loops
            .borrow()
            .iter()
            .filter(|(_, o)| which(o))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.stop_key(env, key)?;
        }
        Ok(())
    }

    pub(super) fn stop_key(&self, env: &Env, key: u32) -> Result<()> {
        if self.loops.borrow_mut().remove(&key).is_none() {
            return Ok(());
        }
        match self.deliveries.borrow().as_ref() {
            Some(d) => d.stop(env, key),
            None => Ok(()),
        }
    }
}

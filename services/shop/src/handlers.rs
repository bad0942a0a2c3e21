//! The shop's commands: wire body in, domain command decided on the cart, one event appended, the
//! reply out (errors mapped by `From<ShopError> for ServiceError`).

use crate::domain::{self, Cart, Command};
use crate::{cart_subject, wire, Shop};
use runtime::service::Request;
use runtime::ServiceError;
use schemas::shop as w;
use std::sync::Arc;

impl Shop {
    /// Runs a command on its cart; `reply` builds the answer from the state after the event.
    async fn command<R, F>(&self, req: &Request, cmd: Command, reply: F) -> Result<R, ServiceError>
    where
        R: serde::Serialize + serde::de::DeserializeOwned + Send,
        F: Fn(&str, &Cart, &domain::Event, u64) -> R + Send + Sync,
    {
        let order_id = uuid::Uuid::now_v7();
        let subject = cart_subject(cmd.customer_id());
        let customer = cmd.customer_id().to_string();
        Ok(self
            .carts
            .execute(
                &subject,
                req.msg_id(),
                |cart, now| domain::decide(cart, &cmd, now, order_id),
                |cart, event, seq| reply(&customer, cart, event, seq),
            )
            .await?)
    }

    async fn cart_reply(&self, req: &Request, cmd: Command) -> Result<w::Cart, ServiceError> {
        self.command(req, cmd, |customer, cart, _, seq| {
            wire::cart(customer, cart, seq)
        })
        .await
    }
}

/// `shop.cmd.add-item`.
pub(crate) async fn add_item(
    s: Arc<Shop>,
    b: w::AddItem,
    req: Request,
) -> Result<w::Cart, ServiceError> {
    s.cart_reply(&req, Command::add_item(&b)?).await
}

/// `shop.cmd.update-item`.
pub(crate) async fn update_item(
    s: Arc<Shop>,
    b: w::UpdateItem,
    req: Request,
) -> Result<w::Cart, ServiceError> {
    s.cart_reply(&req, Command::update_item(&b)?).await
}

/// `shop.cmd.remove-item`.
pub(crate) async fn remove_item(
    s: Arc<Shop>,
    b: w::RemoveItem,
    req: Request,
) -> Result<w::Cart, ServiceError> {
    s.cart_reply(&req, Command::remove_item(&b)?).await
}

/// `shop.cmd.checkout`.
pub(crate) async fn checkout(
    s: Arc<Shop>,
    b: w::Checkout,
    req: Request,
) -> Result<w::CheckoutReply, ServiceError> {
    s.command(&req, Command::checkout(&b)?, |_, _, event, seq| {
        wire::checkout(event, seq)
    })
    .await?
    .ok_or_else(|| ServiceError::internal("checkout appended another event"))
}

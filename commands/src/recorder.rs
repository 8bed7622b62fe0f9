//! Where decisions go: each one is applied to the state the moment it is decided, so the
//! next rule sees it, and the state only ever changes through `apply` (which is why
//! folding the recorded stream reproduces it exactly).

use tape_events::{ids, Event, Stamped, Timestamp};
use uuid::Uuid;

use crate::state::State;

/// Records the decisions of one input.
pub struct Recorder<'a> {
    pub state: &'a mut State,
    pub out: &'a mut Vec<Stamped>,
    pub input_id: Uuid,
    pub at: Timestamp,
    pub decisions: usize,
}

impl Recorder<'_> {
    /// Applies and records a decision. An `OrderPlaced` gets its id here: UUIDv5 of the
    /// input's id and the decision's index (SPEC 2.2).
    pub fn emit(&mut self, mut event: Event) {
        if let Event::OrderPlaced(order) = &mut event {
            if order.order_id.is_nil() {
                order.order_id = ids::order_id(self.input_id, self.decisions);
            }
        }
        let stamped = Stamped { at: self.at, event };
        self.state.apply(&stamped);
        self.out.push(stamped);
        self.decisions += 1;
    }
}

-- Indexes for `tape audit explain` (docs/audit.md). Partial, on the rare event types
-- only (orders, fills, stop-losses, trade closes, captures), so an append of a quote or a
-- check pays nothing but the predicate. `trading_decisions` (a projection) finds a
-- recommendation's decisions; these find what followed them in the log.

-- The lifecycle of an order: OrderPlaced, OrderSubmitted, OrderFilled, OrderRejected,
-- OrderCanceled.
CREATE INDEX events_order_idx ON events ((payload->>'order_id'), position)
    WHERE event_type IN ('OrderPlaced', 'OrderSubmitted', 'OrderFilled', 'OrderRejected', 'OrderCanceled');

-- What happened to a position: its fills, exit orders, stop-losses and the closed trade.
CREATE INDEX events_ticker_trade_idx ON events (stream_id, (payload->>'ticker'), position)
    WHERE event_type IN ('OrderPlaced', 'OrderFilled', 'StopLossTriggered', 'TradeClosed');

-- Where a recommendation was captured, without the projections (`--from-log`).
CREATE INDEX events_recommendation_capture_idx ON events ((payload->>'recommendation_id'))
    WHERE event_type = 'RecommendationReceived';

//! Writing row changes: a batch of [`Change`]s becomes one multi-row statement per table
//! (`INSERT … SELECT * FROM unnest($1, …)`), run inside the caller's transaction.
//!
//! Orders and positions are keyed rows: within a batch only each key's last state is
//! written (upsert, or delete for a closed position). Breaker clears are `UPDATE`s run
//! after the batch's trips are in, in event order. Decimals travel as text and are cast
//! to `numeric` by the server (exact).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tape_projections::{
    BreakerClear, BreakerTripRow, Change, DecisionRow, FillRow, OrderRow, PositionRow, ReserveRow, SnapshotRow, Table,
    TierRow,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::schema::Target;

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn time(at: tape_events::Timestamp) -> DateTime<Utc> {
    at.datetime()
}

/// Row changes waiting to be written.
#[derive(Debug, Default)]
pub struct Batch {
    decisions: Vec<DecisionRow>,
    orders: BTreeMap<Uuid, OrderRow>,
    fills: Vec<FillRow>,
    positions: BTreeMap<(String, String), Option<PositionRow>>,
    snapshots: Vec<SnapshotRow>,
    reserve: Vec<ReserveRow>,
    trips: Vec<BreakerTripRow>,
    clears: Vec<BreakerClear>,
    tiers: Vec<TierRow>,
    /// Changes added since the last write.
    pub len: usize,
}

impl Batch {
    /// Adds changes (in event order).
    pub fn extend(&mut self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            self.len += 1;
            match change {
                Change::Decision(row) => self.decisions.push(row),
                Change::Order(row) => {
                    self.orders.insert(row.order_id, row);
                }
                Change::Fill(row) => self.fills.push(row),
                Change::Position(row) => {
                    self.positions.insert((row.account_id.clone(), row.ticker.clone()), Some(row));
                }
                Change::PositionClosed { account_id, ticker } => {
                    self.positions.insert((account_id, ticker), None);
                }
                Change::Snapshot(row) => self.snapshots.push(row),
                Change::Reserve(row) => self.reserve.push(row),
                Change::BreakerTripped(row) => self.trips.push(row),
                Change::BreakerCleared(row) => self.clears.push(row),
                Change::TierChanged(row) => self.tiers.push(row),
            }
        }
    }

    /// Writes every change into the tables of `target` and empties the batch.
    ///
    /// # Errors
    /// The database refused a statement.
    pub async fn write(&mut self, tx: &Transaction<'_>, target: &Target) -> Result<(), tokio_postgres::Error> {
        if !self.decisions.is_empty() {
            write_decisions(tx, &target.table(Table::TradingDecisions), &self.decisions).await?;
        }
        if !self.orders.is_empty() {
            write_orders(tx, &target.table(Table::Orders), self.orders.values()).await?;
        }
        if !self.fills.is_empty() {
            write_fills(tx, &target.table(Table::Fills), &self.fills).await?;
        }
        if !self.positions.is_empty() {
            write_positions(tx, &target.table(Table::Positions), &self.positions).await?;
        }
        if !self.snapshots.is_empty() {
            write_snapshots(tx, &target.table(Table::PortfolioSnapshots), &self.snapshots).await?;
        }
        if !self.reserve.is_empty() {
            write_reserve(tx, &target.table(Table::ReservePoolLedger), &self.reserve).await?;
        }
        if !self.trips.is_empty() || !self.clears.is_empty() {
            write_breakers(tx, &target.table(Table::CircuitBreakerTrips), &self.trips, &self.clears).await?;
        }
        if !self.tiers.is_empty() {
            write_tiers(tx, &target.table(Table::RiskTierHistory), &self.tiers).await?;
        }
        *self = Self::default();
        Ok(())
    }
}

async fn write_decisions(tx: &Transaction<'_>, table: &str, rows: &[DecisionRow]) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
    let positions: Vec<i64> = rows.iter().map(|r| r.position).collect();
    let accounts: Vec<&str> = rows.iter().map(|r| r.account_id.as_str()).collect();
    let ats: Vec<DateTime<Utc>> = rows.iter().map(|r| time(r.at)).collect();
    let recommendations: Vec<&str> = rows.iter().map(|r| r.recommendation_id.as_str()).collect();
    let tickers: Vec<Option<&str>> = rows.iter().map(|r| r.ticker.as_deref()).collect();
    let sides: Vec<Option<&str>> = rows.iter().map(|r| r.side.as_deref()).collect();
    let decisions: Vec<&str> = rows.iter().map(|r| r.decision).collect();
    let finals: Vec<bool> = rows.iter().map(|r| r.is_final).collect();
    let reasons: Vec<Option<&str>> = rows.iter().map(|r| r.skip_reason.as_deref()).collect();
    let shares: Vec<Option<i64>> = rows.iter().map(|r| r.shares.map(int)).collect();
    let dollars: Vec<Option<String>> = rows.iter().map(|r| r.dollar_amount.map(|d| d.to_string())).collect();
    let prices: Vec<Option<String>> = rows.iter().map(|r| r.price.map(|d| d.to_string())).collect();
    let tiers: Vec<&str> = rows.iter().map(|r| r.risk_tier).collect();
    let hashes: Vec<Option<&str>> = rows.iter().map(|r| r.config_hash.as_deref()).collect();
    let checks: Vec<&Value> = rows.iter().map(|r| &r.checks).collect();
    let sizing: Vec<&Value> = rows.iter().map(|r| &r.sizing).collect();
    let sql = format!(
        "INSERT INTO {table} (event_id, position, account_id, at, recommendation_id, ticker, side, decision, \
         is_final, skip_reason, shares, dollar_amount, price, risk_tier, config_hash, checks, sizing) \
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], \
         $7::text[], $8::text[], $9::bool[], $10::text[], $11::int8[], $12::text[]::numeric[], \
         $13::text[]::numeric[], $14::text[], $15::text[], $16::jsonb[], $17::jsonb[])"
    );
    let params: [&(dyn ToSql + Sync); 17] = [
        &ids,
        &positions,
        &accounts,
        &ats,
        &recommendations,
        &tickers,
        &sides,
        &decisions,
        &finals,
        &reasons,
        &shares,
        &dollars,
        &prices,
        &tiers,
        &hashes,
        &checks,
        &sizing,
    ];
    tx.execute(&sql, &params).await.map(|_| ())
}

async fn write_orders(
    tx: &Transaction<'_>,
    table: &str,
    rows: impl Iterator<Item = &OrderRow> + Clone,
) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<Uuid> = rows.clone().map(|r| r.order_id).collect();
    let accounts: Vec<&str> = rows.clone().map(|r| r.account_id.as_str()).collect();
    let recommendations: Vec<Option<&str>> = rows.clone().map(|r| r.recommendation_id.as_deref()).collect();
    let tickers: Vec<&str> = rows.clone().map(|r| r.ticker.as_str()).collect();
    let sides: Vec<&str> = rows.clone().map(|r| r.side).collect();
    let qtys: Vec<i64> = rows.clone().map(|r| int(r.qty)).collect();
    let reasons: Vec<&str> = rows.clone().map(|r| r.reason).collect();
    let placed: Vec<DateTime<Utc>> = rows.clone().map(|r| time(r.placed_at)).collect();
    let placed_positions: Vec<i64> = rows.clone().map(|r| r.placed_position).collect();
    let brokers: Vec<Option<&str>> = rows.clone().map(|r| r.broker_order_id.as_deref()).collect();
    let filled: Vec<i64> = rows.clone().map(|r| int(r.filled_qty)).collect();
    let notional: Vec<String> = rows.clone().map(|r| r.filled_notional.to_string()).collect();
    let statuses: Vec<&str> = rows.clone().map(|r| r.status.as_str()).collect();
    let status_reasons: Vec<Option<&str>> = rows.clone().map(|r| r.status_reason.as_deref()).collect();
    let updated: Vec<DateTime<Utc>> = rows.map(|r| time(r.updated_at)).collect();
    let sql = format!(
        "INSERT INTO {table} (order_id, account_id, recommendation_id, ticker, side, qty, reason, placed_at, \
         placed_position, broker_order_id, filled_qty, filled_notional, status, status_reason, updated_at) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[], \
         $8::timestamptz[], $9::int8[], $10::text[], $11::int8[], $12::text[]::numeric[], $13::text[], $14::text[], \
         $15::timestamptz[]) \
         ON CONFLICT (order_id) DO UPDATE SET broker_order_id = EXCLUDED.broker_order_id, \
         filled_qty = EXCLUDED.filled_qty, filled_notional = EXCLUDED.filled_notional, status = EXCLUDED.status, \
         status_reason = EXCLUDED.status_reason, updated_at = EXCLUDED.updated_at"
    );
    let params: [&(dyn ToSql + Sync); 15] = [
        &ids,
        &accounts,
        &recommendations,
        &tickers,
        &sides,
        &qtys,
        &reasons,
        &placed,
        &placed_positions,
        &brokers,
        &filled,
        &notional,
        &statuses,
        &status_reasons,
        &updated,
    ];
    tx.execute(&sql, &params).await.map(|_| ())
}

async fn write_fills(tx: &Transaction<'_>, table: &str, rows: &[FillRow]) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
    let positions: Vec<i64> = rows.iter().map(|r| r.position).collect();
    let accounts: Vec<&str> = rows.iter().map(|r| r.account_id.as_str()).collect();
    let ats: Vec<DateTime<Utc>> = rows.iter().map(|r| time(r.at)).collect();
    let orders: Vec<Uuid> = rows.iter().map(|r| r.order_id).collect();
    let fill_ids: Vec<&str> = rows.iter().map(|r| r.fill_id.as_str()).collect();
    let tickers: Vec<&str> = rows.iter().map(|r| r.ticker.as_str()).collect();
    let sides: Vec<&str> = rows.iter().map(|r| r.side).collect();
    let qtys: Vec<i64> = rows.iter().map(|r| int(r.qty)).collect();
    let prices: Vec<String> = rows.iter().map(|r| r.price.to_string()).collect();
    let sql = format!(
        "INSERT INTO {table} (event_id, position, account_id, at, order_id, fill_id, ticker, side, qty, price) \
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::timestamptz[], $5::uuid[], $6::text[], \
         $7::text[], $8::text[], $9::int8[], $10::text[]::numeric[])"
    );
    let params: [&(dyn ToSql + Sync); 10] =
        [&ids, &positions, &accounts, &ats, &orders, &fill_ids, &tickers, &sides, &qtys, &prices];
    tx.execute(&sql, &params).await.map(|_| ())
}

async fn write_positions(
    tx: &Transaction<'_>,
    table: &str,
    rows: &BTreeMap<(String, String), Option<PositionRow>>,
) -> Result<(), tokio_postgres::Error> {
    let closed: Vec<&(String, String)> = rows.iter().filter(|(_, r)| r.is_none()).map(|(k, _)| k).collect();
    if !closed.is_empty() {
        let accounts: Vec<&str> = closed.iter().map(|k| k.0.as_str()).collect();
        let tickers: Vec<&str> = closed.iter().map(|k| k.1.as_str()).collect();
        let sql = format!(
            "DELETE FROM {table} p USING unnest($1::text[], $2::text[]) AS c(account_id, ticker) \
             WHERE p.account_id = c.account_id AND p.ticker = c.ticker"
        );
        tx.execute(&sql, &[&accounts, &tickers]).await?;
    }
    let open: Vec<&PositionRow> = rows.values().flatten().collect();
    if !open.is_empty() {
        let accounts: Vec<&str> = open.iter().map(|r| r.account_id.as_str()).collect();
        let tickers: Vec<&str> = open.iter().map(|r| r.ticker.as_str()).collect();
        let qtys: Vec<i64> = open.iter().map(|r| int(r.qty)).collect();
        let costs: Vec<String> = open.iter().map(|r| r.avg_cost.to_string()).collect();
        let realized: Vec<String> = open.iter().map(|r| r.realized_pnl.to_string()).collect();
        let opened: Vec<DateTime<Utc>> = open.iter().map(|r| time(r.opened_at)).collect();
        let updated: Vec<DateTime<Utc>> = open.iter().map(|r| time(r.updated_at)).collect();
        let sql = format!(
            "INSERT INTO {table} (account_id, ticker, qty, avg_cost, realized_pnl, opened_at, updated_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[]::numeric[], $5::text[]::numeric[], \
             $6::timestamptz[], $7::timestamptz[]) \
             ON CONFLICT (account_id, ticker) DO UPDATE SET qty = EXCLUDED.qty, avg_cost = EXCLUDED.avg_cost, \
             realized_pnl = EXCLUDED.realized_pnl, opened_at = EXCLUDED.opened_at, updated_at = EXCLUDED.updated_at"
        );
        let params: [&(dyn ToSql + Sync); 7] = [&accounts, &tickers, &qtys, &costs, &realized, &opened, &updated];
        tx.execute(&sql, &params).await?;
    }
    Ok(())
}

async fn write_snapshots(tx: &Transaction<'_>, table: &str, rows: &[SnapshotRow]) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
    let positions: Vec<i64> = rows.iter().map(|r| r.position).collect();
    let accounts: Vec<&str> = rows.iter().map(|r| r.account_id.as_str()).collect();
    let ats: Vec<DateTime<Utc>> = rows.iter().map(|r| time(r.at)).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
    let text = |f: fn(&SnapshotRow) -> rust_decimal::Decimal| -> Vec<String> {
        rows.iter().map(|r| f(r).to_string()).collect()
    };
    let cash = text(|r| r.cash);
    let equity = text(|r| r.equity);
    let reserve = text(|r| r.reserve);
    let pool = text(|r| r.active_pool);
    let counts: Vec<i32> = rows.iter().map(|r| i32::try_from(r.positions).unwrap_or(i32::MAX)).collect();
    let heat = text(|r| r.heat);
    let hwm = text(|r| r.high_water_mark);
    let sql = format!(
        "INSERT INTO {table} (event_id, position, account_id, at, kind, cash, equity, reserve, active_pool, \
         positions, heat, high_water_mark) \
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::timestamptz[], $5::text[], \
         $6::text[]::numeric[], $7::text[]::numeric[], $8::text[]::numeric[], $9::text[]::numeric[], $10::int4[], \
         $11::text[]::numeric[], $12::text[]::numeric[])"
    );
    let params: [&(dyn ToSql + Sync); 12] =
        [&ids, &positions, &accounts, &ats, &kinds, &cash, &equity, &reserve, &pool, &counts, &heat, &hwm];
    tx.execute(&sql, &params).await.map(|_| ())
}

async fn write_reserve(tx: &Transaction<'_>, table: &str, rows: &[ReserveRow]) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
    let positions: Vec<i64> = rows.iter().map(|r| r.position).collect();
    let accounts: Vec<&str> = rows.iter().map(|r| r.account_id.as_str()).collect();
    let ats: Vec<DateTime<Utc>> = rows.iter().map(|r| time(r.at)).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
    let amounts: Vec<String> = rows.iter().map(|r| r.amount.to_string()).collect();
    let balances: Vec<String> = rows.iter().map(|r| r.balance_after.to_string()).collect();
    let sql = format!(
        "INSERT INTO {table} (event_id, position, account_id, at, kind, amount, balance_after) \
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::timestamptz[], $5::text[], \
         $6::text[]::numeric[], $7::text[]::numeric[])"
    );
    let params: [&(dyn ToSql + Sync); 7] = [&ids, &positions, &accounts, &ats, &kinds, &amounts, &balances];
    tx.execute(&sql, &params).await.map(|_| ())
}

async fn write_breakers(
    tx: &Transaction<'_>,
    table: &str,
    trips: &[BreakerTripRow],
    clears: &[BreakerClear],
) -> Result<(), tokio_postgres::Error> {
    if !trips.is_empty() {
        let ids: Vec<Uuid> = trips.iter().map(|r| r.event_id).collect();
        let positions: Vec<i64> = trips.iter().map(|r| r.position).collect();
        let accounts: Vec<&str> = trips.iter().map(|r| r.account_id.as_str()).collect();
        let ats: Vec<DateTime<Utc>> = trips.iter().map(|r| time(r.at)).collect();
        let kinds: Vec<&str> = trips.iter().map(|r| r.kind).collect();
        let tickers: Vec<Option<&str>> = trips.iter().map(|r| r.ticker.as_deref()).collect();
        let untils: Vec<Option<DateTime<Utc>>> = trips.iter().map(|r| r.until.map(time)).collect();
        let sql = format!(
            "INSERT INTO {table} (event_id, position, account_id, at, kind, ticker, until) \
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], \
             $7::timestamptz[])"
        );
        let params: [&(dyn ToSql + Sync); 7] = [&ids, &positions, &accounts, &ats, &kinds, &tickers, &untils];
        tx.execute(&sql, &params).await?;
    }
    // The core's fold: a clear removes the matching breakers still active at its time.
    let sql = format!(
        "UPDATE {table} SET cleared_at = $1, cleared_event_id = $2 \
         WHERE account_id = $3 AND kind = $4 AND ticker IS NOT DISTINCT FROM $5 AND cleared_at IS NULL \
         AND position < $6 AND (until IS NULL OR $1 < until)"
    );
    for clear in clears {
        let at = time(clear.at);
        let params: [&(dyn ToSql + Sync); 6] =
            [&at, &clear.event_id, &clear.account_id, &clear.kind, &clear.ticker, &clear.position];
        tx.execute(&sql, &params).await?;
    }
    Ok(())
}

async fn write_tiers(tx: &Transaction<'_>, table: &str, rows: &[TierRow]) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
    let positions: Vec<i64> = rows.iter().map(|r| r.position).collect();
    let accounts: Vec<&str> = rows.iter().map(|r| r.account_id.as_str()).collect();
    let ats: Vec<DateTime<Utc>> = rows.iter().map(|r| time(r.at)).collect();
    let from: Vec<&str> = rows.iter().map(|r| r.from_tier).collect();
    let to: Vec<&str> = rows.iter().map(|r| r.to_tier).collect();
    let reasons: Vec<&str> = rows.iter().map(|r| r.reason).collect();
    let sql = format!(
        "INSERT INTO {table} (event_id, position, account_id, at, from_tier, to_tier, reason) \
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], \
         $7::text[])"
    );
    let params: [&(dyn ToSql + Sync); 7] = [&ids, &positions, &accounts, &ats, &from, &to, &reasons];
    tx.execute(&sql, &params).await.map(|_| ())
}

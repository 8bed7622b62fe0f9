//! `tape simulate` (SPEC 9, 12, 13): the pure core over a scenario file, with the paper
//! broker and the schedule of SPEC 7, and no database. Streams its input and output, so
//! memory stays flat however long the file is.

use std::io::{BufRead, Write};

use tape_commands::schedule::TickCursor;
use tape_commands::{paper, Engine, Input, InputError, State, StepOutcome};
use tape_events::{ids, Config, ConfigActivated, Event, Stamped, Timestamp};
use uuid::Uuid;

use crate::scenario::{parse_line, LineError};
use crate::summary::Summary;

/// The seed of the deterministic UUIDv7 ids `simulate` gives its inputs.
const INPUT_ID_SEED: u16 = 0x5111;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The decision configuration, activated right after `AccountOpened`.
    pub config: Config,
    /// Inputs after this are not read; ticks due up to it run (default: the last input).
    pub until: Option<Timestamp>,
    /// Report and skip bad lines instead of stopping at the first.
    pub skip_bad_lines: bool,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    BadLine(#[from] LineError),
    #[error("reading the scenario: {0}")]
    Read(#[source] std::io::Error),
    #[error("writing the events: {0}")]
    Write(#[source] std::io::Error),
    /// The sink (the event store) failed; what it had recorded stays recorded.
    #[error("recording the events: {0}")]
    Sink(String),
}

/// Where the steps go: the core itself (`simulate --out`), or the core behind an event
/// store (`simulate --store`, in `services`). The driver reads the sink's state for the
/// paper broker and the schedule.
pub trait Sink {
    /// The state after every step so far.
    fn state(&self) -> &State;
    /// Steps one input; pushes what it recorded (the input, then its decisions) to `out`.
    ///
    /// # Errors
    /// [`SinkError::Input`] when the core refuses the input (nothing recorded), or
    /// [`SinkError::Failed`] when the sink cannot record.
    fn step(&mut self, input: Input, out: &mut Vec<Stamped>) -> Result<StepOutcome, SinkError>;
}

/// Why a sink did not record a step.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{0}")]
    Failed(String),
}

impl Sink for Engine {
    fn state(&self) -> &State {
        Engine::state(self)
    }

    #[inline]
    fn step(&mut self, input: Input, out: &mut Vec<Stamped>) -> Result<StepOutcome, SinkError> {
        Ok(Engine::step(self, input, out)?)
    }
}

/// A failed input: a bad line, or a sink that cannot record.
enum InputFailure {
    Line(LineError),
    Sink(String),
}

/// Progress callbacks: bytes read so far, and each skipped bad line.
pub trait Observer {
    fn progress(&mut self, _bytes_read: u64) {}
    fn bad_line(&mut self, _error: &LineError) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

struct Run<'o, W: Write, S: Sink> {
    engine: S,
    cursor: Option<TickCursor>,
    config: Config,
    out: W,
    buffer: Vec<Stamped>,
    line_buffer: Vec<u8>,
    sequence: u64,
    /// The account's key of its input ids (`ids::input_id_key`), set by `AccountOpened`.
    id_key: u64,
    summary: Summary,
    observer: &'o mut dyn Observer,
}

impl<W: Write, S: Sink> Run<'_, W, S> {
    fn next_id(&mut self, at: Timestamp) -> Uuid {
        self.sequence += 1;
        ids::deterministic_v7(at, INPUT_ID_SEED, self.id_key, self.sequence)
    }

    fn step(&mut self, stamped: Stamped) -> Result<StepOutcome, SinkError> {
        if let Event::AccountOpened(opened) = &stamped.event {
            self.id_key = ids::input_id_key(&opened.account_id);
        }
        let input = Input { id: self.next_id(stamped.at), stamped };
        self.engine.step(input, &mut self.buffer)
    }

    fn flush(&mut self) -> Result<(), SimulateError> {
        for stamped in self.buffer.drain(..) {
            self.summary.observe(&stamped);
            self.line_buffer.clear();
            stamped.write_json_line(&mut self.line_buffer);
            self.line_buffer.push(b'\n');
            self.out.write_all(&self.line_buffer).map_err(SimulateError::Write)?;
        }
        Ok(())
    }

    fn run_ticks(&mut self, limit: Timestamp) -> Result<(), SimulateError> {
        let config = self.engine.state().config.clone();
        loop {
            let want_polls = self.engine.state().has_pending();
            let Some(cursor) = self.cursor.as_mut() else { break };
            let Some(tick) = cursor.next_due(limit, want_polls, &config) else { break };
            let stamped = Stamped::new(tick.at, tape_events::SchedulerTick { tick: tick.kind });
            match self.step(stamped) {
                Ok(_) => {}
                Err(SinkError::Failed(e)) => return Err(SimulateError::Sink(e)),
                Err(SinkError::Input(e)) => panic!("Invariant: a scheduler tick is a valid input: {e}"),
            }
            self.flush()?;
        }
        Ok(())
    }

    /// One input line: its ticks first, then paper fills before a quote, then the input.
    fn input(&mut self, line: u64, stamped: Stamped) -> Result<(), InputFailure> {
        let at = stamped.at;
        let bad = |e: SinkError| match e {
            SinkError::Input(e) => InputFailure::Line(LineError { line, message: e.to_string() }),
            SinkError::Failed(e) => InputFailure::Sink(e),
        };
        if let Event::QuoteObserved(q) = &stamped.event {
            if self.engine.state().is_open() {
                while let Some(fill) = paper::next_fill(self.engine.state(), &q.ticker, q.price, at) {
                    self.step(Stamped::new(at, fill)).map_err(bad)?;
                }
            }
        }
        let opening = matches!(stamped.event, Event::AccountOpened(_));
        let outcome = self.step(stamped).map_err(bad)?;
        if opening && matches!(outcome, StepOutcome::Recorded { .. }) {
            let activated = ConfigActivated { config: Box::new(self.config.clone()), hash: self.config.hash() };
            self.step(Stamped::new(at, activated)).map_err(bad)?;
            self.cursor = Some(TickCursor::after(at));
        }
        if let Some(cursor) = self.cursor.as_mut() {
            cursor.advance_to(at);
        }
        Ok(())
    }
}

/// Runs a scenario from `input` and writes every event to `out` as JSON Lines.
///
/// # Errors
/// [`SimulateError`]: a bad line (unless `skip_bad_lines`), or an I/O error.
pub fn run<R: BufRead, W: Write>(
    input: R,
    out: W,
    options: &Options,
    observer: &mut dyn Observer,
) -> Result<(Summary, State), SimulateError> {
    let (summary, engine) = run_with(input, out, Engine::default(), options, observer)?;
    Ok((summary, engine.into_state()))
}

/// [`run`] into any [`Sink`] (which starts empty: the scenario opens the account). Every
/// recorded event is also written to `out` (pass `std::io::sink()` for none).
///
/// # Errors
/// [`SimulateError`]: a bad line (unless `skip_bad_lines`), an I/O error, or a sink failure.
pub fn run_with<R: BufRead, W: Write, S: Sink>(
    mut input: R,
    out: W,
    sink: S,
    options: &Options,
    observer: &mut dyn Observer,
) -> Result<(Summary, S), SimulateError> {
    let mut run = Run {
        engine: sink,
        cursor: None,
        config: options.config.clone(),
        out,
        buffer: Vec::with_capacity(64),
        line_buffer: Vec::with_capacity(1024),
        sequence: 0,
        id_key: 0,
        summary: Summary::default(),
        observer,
    };
    let mut text = String::with_capacity(1024);
    let mut line: u64 = 0;
    let mut bytes: u64 = 0;
    let mut last_at: Option<Timestamp> = None;
    loop {
        text.clear();
        let read = input.read_line(&mut text).map_err(SimulateError::Read)?;
        if read == 0 {
            break;
        }
        line += 1;
        bytes += read as u64;
        if line.is_multiple_of(4096) {
            run.observer.progress(bytes);
        }
        if text.trim().is_empty() {
            continue;
        }
        let result = parse_line(line, text.trim_end()).and_then(|stamped| {
            if let Some(until) = options.until {
                if stamped.at > until {
                    return Ok(None);
                }
            }
            if let Some(previous) = last_at {
                if stamped.at < previous {
                    return Err(LineError {
                        line,
                        message: format!("field at: {} is before the previous input's {previous}", stamped.at),
                    });
                }
            }
            Ok(Some(stamped))
        });
        let stamped = match result {
            Ok(Some(stamped)) => stamped,
            Ok(None) => break,
            Err(e) => {
                run.summary.bad_lines += 1;
                if options.skip_bad_lines {
                    run.observer.bad_line(&e);
                    continue;
                }
                return Err(e.into());
            }
        };
        let at = stamped.at;
        run.run_ticks(at)?;
        match run.input(line, stamped) {
            Ok(()) => last_at = Some(at),
            Err(InputFailure::Sink(e)) => return Err(SimulateError::Sink(e)),
            Err(InputFailure::Line(e)) => {
                run.buffer.clear();
                run.summary.bad_lines += 1;
                if options.skip_bad_lines {
                    run.observer.bad_line(&e);
                } else {
                    return Err(e.into());
                }
            }
        }
        run.flush()?;
    }
    run.observer.progress(bytes);
    if let Some(limit) = options.until.or(last_at) {
        run.run_ticks(limit)?;
    }
    run.out.flush().map_err(SimulateError::Write)?;
    let mut summary = run.summary;
    summary.finish(run.engine.state());
    Ok((summary, run.engine))
}

//! What the operator sees while ferry works. On a terminal: the phase, done and total bytes,
//! percent, speed and ETA, updated as bytes stream, and a line per image being worked on. When
//! stderr is not a terminal (scripts, CI): nothing while it works. Either way, drivers' warnings
//! and errors, and one summary line at the end (docs/progress.md); `-q` leaves only errors.

use ferry::driver::{Events, ImageState, Level, Phase};
use indicatif::{HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Terminal {
    verbose: bool,
    quiet: bool,
    /// The live display, when stderr is a terminal and `-q` was not given.
    live: Option<Live>,
    started: Instant,
    phase: Mutex<Option<Phase>>,
    /// Bytes fetched into the staging layout (export; relocate from a bundle.json).
    fetched: AtomicU64,
    /// Bytes sent to the destination.
    sent: AtomicU64,
    /// Bytes of the archive written.
    archived: AtomicU64,
    present: AtomicU64,
    mounted: AtomicU64,
    images: Mutex<Counts>,
}

struct Live {
    multi: MultiProgress,
    bar: ProgressBar,
    /// A line per image being worked on, gone once it is done.
    images: Mutex<HashMap<String, ProgressBar>>,
}

#[derive(Default)]
struct Counts {
    done: usize,
    failed: usize,
}

impl Terminal {
    pub fn new(verbose: bool, quiet: bool) -> Self {
        let live = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let bar = multi.add(ProgressBar::no_length());
            bar.set_style(style(false));
            bar.enable_steady_tick(Duration::from_millis(100));
            Live { multi, bar, images: Mutex::new(HashMap::new()) }
        });
        Terminal {
            verbose,
            quiet,
            live,
            started: Instant::now(),
            phase: Mutex::new(None),
            fetched: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            archived: AtomicU64::new(0),
            present: AtomicU64::new(0),
            mounted: AtomicU64::new(0),
            images: Mutex::new(Counts::default()),
        }
    }

    /// Clears the live display.
    pub fn finish(&self) {
        if let Some(live) = &self.live {
            for (_, line) in live.images.lock().unwrap().drain() {
                line.finish_and_clear();
            }
            live.bar.finish_and_clear();
        }
    }

    /// One line on stderr (also when it is not a terminal; not with `-q`) saying what moved:
    /// `relocated 5 images in 3s: sent 96.0 MiB, 4.0 MiB present, 0 B mounted`.
    /// The summary of a command that copied images: what it sent and what it did not have to.
    pub fn summary(&self, verb: &str) {
        if !self.quiet {
            eprintln!("ferry: {}", self.summary_line(verb, None));
        }
    }

    /// The summary of a command that wrote an archive of `archive_bytes`: what it fetched and
    /// the archive's size.
    pub fn summary_archive(&self, verb: &str, archive_bytes: u64) {
        if !self.quiet {
            eprintln!("ferry: {}", self.summary_line(verb, Some(archive_bytes)));
        }
    }

    /// Prints `line` on stderr, above the progress lines if they are shown.
    pub fn note(&self, line: &str) {
        let line = format!("ferry: {line}");
        match &self.live {
            Some(live) => live.multi.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn summary_line(&self, verb: &str, archive_bytes: Option<u64>) -> String {
        let counts = self.images.lock().unwrap();
        let failed = if counts.failed > 0 { format!(" ({} failed)", counts.failed) } else { String::new() };
        let images = counts.done + counts.failed;
        let plural = if images == 1 { "" } else { "s" };
        let elapsed = HumanDuration(self.started.elapsed());
        let bytes = |counter: &AtomicU64| HumanBytes(counter.load(Ordering::Relaxed));
        let mut line = format!("{verb} {images} image{plural}{failed} in {elapsed}: ");
        if let Some(archive_bytes) = archive_bytes {
            // While the archive is written, the blobs fetched into it and the archive's growth
            // both move the bar; what is not the archive was fetched.
            let archived = self.archived.load(Ordering::Relaxed);
            let fetched = self.fetched.load(Ordering::Relaxed) + archived.saturating_sub(archive_bytes);
            line += &format!("fetched {}, wrote {}", HumanBytes(fetched), HumanBytes(archive_bytes));
        } else {
            if self.fetched.load(Ordering::Relaxed) > 0 {
                line += &format!("fetched {}, ", bytes(&self.fetched));
            }
            line += &format!(
                "sent {}, {} present, {} mounted",
                bytes(&self.sent),
                bytes(&self.present),
                bytes(&self.mounted)
            );
        }
        line
    }
}

/// The main line: with a total, a bar, percent and ETA; without one, bytes and speed.
fn style(with_total: bool) -> ProgressStyle {
    let template = if with_total {
        "{spinner} {prefix:<16} [{bar:30}] {binary_bytes}/{binary_total_bytes} {percent:>3}% \
         {binary_bytes_per_sec} ETA {eta}"
    } else {
        "{spinner} {prefix:<16} {binary_bytes} {binary_bytes_per_sec} {elapsed}"
    };
    ProgressStyle::with_template(template).expect("valid template").progress_chars("=> ")
}

impl Live {
    /// Moves the bar on, keeping its length at least its position: a total told up front can
    /// fall short of what drivers reframe (a disk's tar header).
    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
        if let Some(length) = self.bar.length()
            && self.bar.position() > length
        {
            self.bar.set_length(self.bar.position());
        }
    }
}

impl Events for Terminal {
    fn log(&self, driver: &str, level: Level, message: &str) {
        let shown = match level {
            Level::Error => true,
            Level::Warn => !self.quiet,
            Level::Info | Level::Debug => self.verbose && !self.quiet,
        };
        if !shown {
            return;
        }
        let line = format!("ferry: driver {driver}: {level:?}: {message}");
        match &self.live {
            Some(live) => live.multi.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn transferred(&self, bytes: u64) {
        let counter = match *self.phase.lock().unwrap() {
            Some(Phase::WritingArchive) => &self.archived,
            Some(Phase::Copying) => &self.sent,
            _ => &self.fetched,
        };
        counter.fetch_add(bytes, Ordering::Relaxed);
        if let Some(live) = &self.live {
            live.advance(bytes);
        }
    }

    fn skipped(&self, bytes: u64, mounted: bool) {
        let counter = if mounted { &self.mounted } else { &self.present };
        counter.fetch_add(bytes, Ordering::Relaxed);
        if let Some(live) = &self.live {
            live.advance(bytes);
        }
    }

    fn wants_totals(&self) -> bool {
        self.live.is_some()
    }

    fn phase(&self, phase: Phase, total: Option<u64>) {
        *self.phase.lock().unwrap() = Some(phase);
        if let Some(live) = &self.live {
            live.bar.set_style(style(total.is_some()));
            live.bar.set_prefix(phase.describe());
            live.bar.reset();
            match total {
                Some(total) => live.bar.set_length(total),
                None => live.bar.unset_length(),
            }
            // Drawn now, past the draw rate limit: a short phase is still seen.
            live.multi.suspend(|| {});
        }
    }

    fn image(&self, key: &str, state: ImageState) {
        match state {
            ImageState::Working => {}
            ImageState::Done => self.images.lock().unwrap().done += 1,
            ImageState::Failed => self.images.lock().unwrap().failed += 1,
        }
        let Some(live) = &self.live else { return };
        let mut lines = live.images.lock().unwrap();
        match state {
            ImageState::Working => {
                let line = live.multi.add(ProgressBar::new_spinner());
                line.set_style(ProgressStyle::with_template("  {spinner} {msg}").expect("valid template"));
                let doing = match *self.phase.lock().unwrap() {
                    Some(Phase::Fetching) => "fetching",
                    Some(Phase::Copying) => "copying",
                    _ => "working",
                };
                line.set_message(format!("{} {doing}", ferry::untrusted::escape(key)));
                line.enable_steady_tick(Duration::from_millis(200));
                lines.insert(key.to_owned(), line);
            }
            ImageState::Done | ImageState::Failed => {
                if let Some(line) = lines.remove(key) {
                    line.finish_and_clear();
                    live.multi.remove(&line);
                }
                if state == ImageState::Failed {
                    live.multi.suspend(|| eprintln!("ferry: image {} failed", ferry::untrusted::escape(key)));
                }
            }
        }
    }
}

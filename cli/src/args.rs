//! A small `--flag value` parser: the CLI has a handful of options, not worth a dependency.

use std::collections::BTreeMap;

pub struct UsageError(pub String);

pub struct Args {
    pub command: Option<String>,
    values: BTreeMap<String, Option<String>>,
}

impl Args {
    pub fn parse(argv: Vec<String>) -> Result<Self, UsageError> {
        let mut command = None;
        let mut values = BTreeMap::new();
        let mut it = argv.into_iter().peekable();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let (name, value) = match name.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => {
                        let takes_value = it.peek().is_some_and(|next| !next.starts_with("--"));
                        (name.to_string(), if takes_value { it.next() } else { None })
                    }
                };
                if values.insert(name.clone(), value).is_some() {
                    return Err(UsageError(format!("--{name} given twice")));
                }
            } else if command.is_none() {
                command = Some(a);
            } else {
                return Err(UsageError(format!("unexpected argument {a:?}")));
            }
        }
        Ok(Args { command, values })
    }

    pub fn flag(&mut self, name: &str) -> bool {
        self.values.remove(name).is_some()
    }

    pub fn string(&mut self, name: &str) -> Result<Option<String>, UsageError> {
        match self.values.remove(name) {
            None => Ok(None),
            Some(Some(v)) => Ok(Some(v)),
            Some(None) => Err(UsageError(format!("--{name} needs a value"))),
        }
    }

    fn parsed<T: std::str::FromStr>(&mut self, name: &str, what: &str) -> Result<Option<T>, UsageError> {
        match self.string(name)? {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| UsageError(format!("--{name} {v:?}: expected {what}"))),
        }
    }

    pub fn usize(&mut self, name: &str) -> Result<Option<usize>, UsageError> {
        self.parsed(name, "a non-negative integer")
    }

    pub fn u64(&mut self, name: &str) -> Result<Option<u64>, UsageError> {
        self.parsed(name, "a non-negative integer")
    }

    pub fn f32(&mut self, name: &str) -> Result<Option<f32>, UsageError> {
        self.parsed(name, "a number")
    }

    /// Fails on any option the command did not read.
    pub fn finish(self) -> Result<(), UsageError> {
        match self.values.keys().next() {
            Some(k) => Err(UsageError(format!("unknown option --{k}"))),
            None => Ok(()),
        }
    }
}

//! The inventory: one decimal droplet ID a line, in creation order (the Ruby DOProxy's
//! format). `print` numbers entries from 0 and `delete N` takes that number.

use anyhow::{bail, Result};

/// The parsed inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Droplet IDs in file order; index = the number `print` shows.
    pub ids: Vec<u64>,
}

impl Inventory {
    /// Parses inventory text. Blank lines and CRLF endings are tolerated (they are dropped
    /// when the file is next written); anything else that is not a droplet ID, or an ID
    /// listed twice, is an error naming the line.
    pub fn parse(name: &str, text: &str) -> Result<Inventory> {
        let mut ids: Vec<u64> = Vec::new();
        let mut first_line: Vec<usize> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let lineno = i + 1;
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let id: u64 = match line.parse() {
                Ok(n) if n > 0 && line.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => bail!("{name}:{lineno}: invalid droplet id {line:?} (expected one decimal droplet ID per line)"),
            };
            if let Some(pos) = ids.iter().position(|&x| x == id) {
                bail!(
                    "{name}:{lineno}: droplet id {id} is already listed at line {}; remove one of the two lines",
                    first_line[pos]
                );
            }
            ids.push(id);
            first_line.push(lineno);
        }
        Ok(Inventory { ids })
    }

    /// The file's text: one ID a line, LF endings.
    pub fn render(&self) -> String {
        self.ids.iter().map(|id| format!("{id}\n")).collect()
    }

    /// The ID at entry `n` (as `print` numbers them).
    pub fn get(&self, n: usize) -> Option<u64> {
        self.ids.get(n).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_original_format() {
        let inv = Inventory::parse("inventory", "7384013\n7384014\n").unwrap();
        assert_eq!(inv.ids, vec![7384013, 7384014]);
        assert_eq!(inv.render(), "7384013\n7384014\n");
    }

    #[test]
    fn tolerates_crlf_blank_lines_and_missing_final_newline() {
        let inv = Inventory::parse("inventory", "1\r\n\r\n  2  \n\n3").unwrap();
        assert_eq!(inv.ids, vec![1, 2, 3]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = Inventory::parse("inv", "1\nabc\n").unwrap_err().to_string();
        assert_eq!(
            e,
            "inv:2: invalid droplet id \"abc\" (expected one decimal droplet ID per line)"
        );
        let e = Inventory::parse("inv", "1\n2\n1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("inv:3: droplet id 1 is already listed at line 1"),
            "{e}"
        );
        for bad in ["-1", "0", "+5", "1.5", "1 2", "99999999999999999999999"] {
            assert!(Inventory::parse("inv", bad).is_err(), "{bad}");
        }
    }
}

//! robots.txt (RFC 9309): the group for smelt's product token, else `*`;
//! the longest matching `Allow`/`Disallow` rule wins (`Allow` on a tie);
//! `*` matches any run of characters and a final `$` anchors the end.

/// The rules of one host for one user agent.
#[derive(Debug, Clone, Default)]
pub struct Robots {
    /// (allow, pattern), from the chosen group.
    rules: Vec<(bool, String)>,
    crawl_delay: Option<f64>,
    deny_all: bool,
}

impl Robots {
    /// No robots.txt (4xx): everything allowed.
    pub fn allow_all() -> Robots {
        Robots::default()
    }

    /// robots.txt unreachable (5xx, network): nothing allowed.
    pub fn deny_all() -> Robots {
        Robots { deny_all: true, ..Robots::default() }
    }

    /// Parses robots.txt for `user_agent` (its product token, `smelt` from
    /// `smelt/0.1.0 (+url)`, is matched case-insensitively).
    pub fn parse(text: &str, user_agent: &str) -> Robots {
        let token = user_agent.split(['/', ' ']).next().unwrap_or("").to_ascii_lowercase();
        // Groups: (agents, rules, crawl delay).
        let mut groups: Vec<(Vec<String>, Vec<(bool, String)>, Option<f64>)> = Vec::new();
        let mut in_agents = false;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            match key.as_str() {
                "user-agent" => {
                    if !in_agents {
                        groups.push((Vec::new(), Vec::new(), None));
                        in_agents = true;
                    }
                    if let Some(g) = groups.last_mut() {
                        g.0.push(value.to_ascii_lowercase());
                    }
                }
                "allow" | "disallow" => {
                    in_agents = false;
                    if let Some(g) = groups.last_mut() {
                        if !value.is_empty() {
                            g.1.push((key == "allow", value.to_string()));
                        }
                    }
                }
                "crawl-delay" => {
                    in_agents = false;
                    if let Some(g) = groups.last_mut() {
                        g.2 = value.parse().ok();
                    }
                }
                _ => {}
            }
        }
        let mine: Vec<_> = groups.iter().filter(|g| !token.is_empty() && g.0.iter().any(|a| a == &token)).collect();
        let chosen =
            if mine.is_empty() { groups.iter().filter(|g| g.0.iter().any(|a| a == "*")).collect() } else { mine };
        let mut r = Robots::default();
        for g in chosen {
            r.rules.extend(g.1.iter().cloned());
            r.crawl_delay = r.crawl_delay.or(g.2);
        }
        r
    }

    /// Whether this stands for a robots.txt that could not be fetched.
    pub fn unreachable(&self) -> bool {
        self.deny_all
    }

    /// Seconds to wait between requests, if the file asks for it.
    pub fn crawl_delay(&self) -> Option<f64> {
        self.crawl_delay.filter(|d| *d > 0.0)
    }

    /// Whether `path` (path and query) may be fetched.
    pub fn allows(&self, path: &str) -> bool {
        if self.deny_all {
            return false;
        }
        if path == "/robots.txt" {
            return true;
        }
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.rules {
            if matches(pattern, path) {
                let len = pattern.len();
                best = match best {
                    Some((l, a)) if l > len || (l == len && a) => Some((l, a)),
                    _ => Some((len, *allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// Whether a robots.txt pattern matches the start of `path`.
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut at = 0;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            if !path.starts_with(part) {
                return false;
            }
            at = part.len();
        } else if i == parts.len() - 1 && anchored {
            return path.len() >= at + part.len() && path.ends_with(part);
        } else {
            match path[at..].find(part) {
                Some(k) => at += k + part.len(),
                None => return false,
            }
        }
    }
    !anchored || at == path.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UA: &str = "smelt/0.1.0 (+https://github.com/smelt-data/smelt)";

    #[test]
    fn longest_match_wins_and_groups_are_chosen_by_token() {
        let txt = "User-agent: *\nDisallow: /private/\nAllow: /private/open\nCrawl-delay: 2\n\nUser-agent: Other\nDisallow: /\n";
        let r = Robots::parse(txt, UA);
        assert!(r.allows("/news/1.html"));
        assert!(!r.allows("/private/x"));
        assert!(r.allows("/private/open/y"));
        assert_eq!(r.crawl_delay(), Some(2.0));
        let r = Robots::parse("User-agent: smelt\nDisallow: /\n\nUser-agent: *\nAllow: /\n", UA);
        assert!(!r.allows("/a"));
        assert!(r.allows("/robots.txt"));
    }

    #[test]
    fn wildcards_and_anchors() {
        let r = Robots::parse("User-agent: *\nDisallow: /*.pdf$\nDisallow: /tmp*/x\n", UA);
        assert!(!r.allows("/a/b.pdf"));
        assert!(r.allows("/a/b.pdf?x=1"));
        assert!(!r.allows("/tmp1/x/y"));
        assert!(r.allows("/tmp1/y"));
        assert!(Robots::allow_all().allows("/x"));
        assert!(!Robots::deny_all().allows("/x"));
    }
}

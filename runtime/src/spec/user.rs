//! The process's uid, gid and supplementary groups: pure parsers for an image's `/etc/passwd`
//! and `/etc/group`, and Docker's resolution of a `user[:group]` string against them.

use super::SpecError;

/// Largest uid or gid Docker (libcontainer's user package) accepts.
const MAX_ID: u32 = i32::MAX as u32;

/// One usable line of `/etc/passwd` (`name:password:uid:gid:gecos:home:shell`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PasswdEntry {
    pub(super) name: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// One usable line of `/etc/group` (`name:password:gid:member,member`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GroupEntry {
    pub(super) name: String,
    pub(super) gid: u32,
    pub(super) members: Vec<String>,
}

/// The resolved identity, ready for the spec's `process.user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ResolvedUser {
    pub(super) uid: u32,
    pub(super) gid: u32,
    /// The primary gid first, then the supplementary groups, without duplicates.
    pub(super) additional_gids: Vec<u32>,
}

/// Parses `/etc/passwd` text. Lines are trimmed; blank lines, comments and lines that cannot
/// be used (fewer than four fields, an empty name, a uid or gid that is not a number) are
/// skipped. libcontainer reads an unparsable number as 0, which would turn a damaged line
/// into root; skipping it is the safe reading of the same file.
pub(super) fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    records(text)
        .filter_map(|mut fields| {
            let name = fields.next()?;
            let _password = fields.next()?;
            let uid = fields.next()?.parse::<u32>().ok()?;
            let gid = fields.next()?.parse::<u32>().ok()?;
            (!name.is_empty()).then(|| PasswdEntry {
                name: name.to_owned(),
                uid,
                gid,
            })
        })
        .collect()
}

/// Parses `/etc/group` text with the same skipping rules as [`parse_passwd`]; the member list
/// (fourth field) may be missing or empty.
pub(super) fn parse_group(text: &str) -> Vec<GroupEntry> {
    records(text)
        .filter_map(|mut fields| {
            let name = fields.next()?;
            let _password = fields.next()?;
            let gid = fields.next()?.parse::<u32>().ok()?;
            let members = fields
                .next()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect();
            (!name.is_empty()).then(|| GroupEntry {
                name: name.to_owned(),
                gid,
                members,
            })
        })
        .collect()
}

/// The colon-separated fields of each line of a passwd or group file that holds a record:
/// lines are trimmed, blank lines and comments skipped.
fn records(text: &str) -> impl Iterator<Item = std::str::Split<'_, char>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split(':'))
}

/// A user or group given by number or by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id<'a> {
    Numeric(&'a str),
    Name(&'a str),
}

impl<'a> Id<'a> {
    fn parse(s: &'a str) -> Self {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            Id::Numeric(s)
        } else {
            Id::Name(s)
        }
    }
}

/// `user` split into its user and optional group part. An empty string means root (uid 0),
/// as in Docker. More than one `:` or an empty part is refused.
fn split(user: &str) -> Option<(Id<'_>, Option<Id<'_>>)> {
    if user.is_empty() {
        return Some((Id::Numeric("0"), None));
    }
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if user_part.is_empty() || group_part.is_some_and(|g| g.is_empty() || g.contains(':')) {
        return None;
    }
    Some((Id::parse(user_part), group_part.map(Id::parse)))
}

/// Whether resolving `user` needs the image's `/etc/passwd` and `/etc/group`.
///
/// Docker resolves every user through those files (libcontainer's `GetExecUser`): a name must
/// be found in passwd; a numeric uid found there takes its primary gid from it (not 0); and
/// when no group is given the user's supplementary groups come from group membership. Even
/// with no user at all, root's entry supplies gid and groups (`id` in an Alpine container run
/// by Docker shows root in bin, daemon, wheel, ...). So the files are needed for everything
/// except an all-numeric `uid:gid`, which is used as given. A malformed string needs nothing:
/// building fails anyway.
pub(crate) fn needs_user_database(user: Option<&str>) -> bool {
    match split(user.unwrap_or_default()) {
        None => false,
        Some((Id::Numeric(_), Some(Id::Numeric(_)))) => false,
        Some(_) => true,
    }
}

fn numeric_id(s: &str, container: &str) -> Result<u32, SpecError> {
    s.parse::<u32>()
        .ok()
        .filter(|id| *id <= MAX_ID)
        .ok_or_else(|| SpecError::IdOutOfRange {
            container: container.to_owned(),
            id: s.to_owned(),
        })
}

/// Resolves `user` (`name`, `uid`, `uid:gid`, `name:group`, `uid:group`, `name:gid`, or empty
/// for root) the way Docker does, against the image's passwd and group text (`None`: the file
/// is absent or was not read, which resolves like an empty file).
///
/// - the user part: a name must match a passwd entry (first match wins); a uid takes the
///   first entry with that uid if there is one, otherwise it is used alone with gid 0;
/// - the group part, if given: a name must match a group entry; a gid is used as given; it
///   replaces the primary gid and no supplementary groups are added;
/// - no group part: the primary gid comes from passwd and the supplementary groups are every
///   group listing the user's name as a member, in file order;
/// - `additionalGids` starts with the primary gid, as Docker has done since 20.10.18 (so a
///   process cannot shed its primary group with `setgroups`), duplicates removed.
pub(super) fn resolve(
    user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
    container: &str,
) -> Result<ResolvedUser, SpecError> {
    let (user_part, group_part) = split(user).ok_or_else(|| SpecError::InvalidUser {
        container: container.to_owned(),
        user: user.to_owned(),
    })?;
    let users = parse_passwd(passwd.unwrap_or_default());

    let (uid, mut gid, name) = match user_part {
        Id::Numeric(s) => {
            let uid = numeric_id(s, container)?;
            match users.iter().find(|u| u.uid == uid) {
                Some(entry) => (uid, entry.gid, Some(entry.name.as_str())),
                None => (uid, 0, None),
            }
        }
        Id::Name(n) => {
            let entry =
                users
                    .iter()
                    .find(|u| u.name == n)
                    .ok_or_else(|| SpecError::UnknownUser {
                        container: container.to_owned(),
                        user: n.to_owned(),
                    })?;
            (entry.uid, entry.gid, Some(entry.name.as_str()))
        }
    };

    let mut supplementary = Vec::new();
    match group_part {
        Some(Id::Numeric(s)) => gid = numeric_id(s, container)?,
        Some(Id::Name(g)) => {
            let groups = parse_group(group.unwrap_or_default());
            gid = groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| SpecError::UnknownGroup {
                    container: container.to_owned(),
                    group: g.to_owned(),
                })?;
        }
        None => {
            if let Some(name) = name {
                supplementary = parse_group(group.unwrap_or_default())
                    .into_iter()
                    .filter(|e| e.members.iter().any(|m| m == name))
                    .map(|e| e.gid)
                    .collect();
            }
        }
    }

    let mut additional_gids = vec![gid];
    for g in supplementary {
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
   app:x:1000:1000:App user:/home/app:/bin/sh   

broken-no-fields
evil:x:notanumber:0::/:/bin/sh
short:x:77
:x:5:5::/:/bin/sh
web:x:1001:2000::/srv:/bin/false
app:x:1234:1234:duplicate, first wins:/:/bin/sh
";

    const GROUP: &str = "\
root:x:0:root
daemon:x:1:root,daemon
app:x:1000:
staff:x:50:app, web
garbage line
bad:x:xx:app
www:x:2000
docker:x:999:app,root
dup:x:1000:app
";

    fn resolve_ok(user: &str) -> ResolvedUser {
        resolve(user, Some(PASSWD), Some(GROUP), "web").expect("resolve")
    }

    fn user(uid: u32, gid: u32, additional: &[u32]) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: additional.to_vec(),
        }
    }

    #[test]
    fn passwd_parser_skips_malformed_lines() {
        let users = parse_passwd(PASSWD);
        let names: Vec<_> = users.iter().map(|u| (u.name.as_str(), u.uid)).collect();
        assert_eq!(
            names,
            [
                ("root", 0),
                ("daemon", 1),
                ("app", 1000),
                ("web", 1001),
                ("app", 1234)
            ]
        );
        assert!(parse_passwd("").is_empty());
    }

    #[test]
    fn group_parser_skips_malformed_lines_and_trims_members() {
        let groups = parse_group(GROUP);
        let staff = groups.iter().find(|g| g.name == "staff").expect("staff");
        assert_eq!(staff.members, ["app", "web"]);
        assert!(
            groups
                .iter()
                .all(|g| g.name != "bad" && g.name != "garbage line")
        );
        let www = groups.iter().find(|g| g.name == "www").expect("www");
        assert!(www.members.is_empty());
    }

    #[test]
    fn name_takes_primary_gid_and_supplementary_groups() {
        // app is a member of staff (50), docker (999) and dup (1000, its primary gid)
        assert_eq!(resolve_ok("app"), user(1000, 1000, &[1000, 50, 999]));
        // web has primary gid 2000 from passwd and is listed in staff
        assert_eq!(resolve_ok("web"), user(1001, 2000, &[2000, 50]));
    }

    #[test]
    fn uid_found_in_passwd_takes_its_gid_and_groups() {
        assert_eq!(resolve_ok("1000"), user(1000, 1000, &[1000, 50, 999]));
        assert_eq!(resolve_ok("0"), user(0, 0, &[0, 1, 999]));
    }

    #[test]
    fn uid_not_in_passwd_is_used_with_gid_zero() {
        assert_eq!(resolve_ok("4242"), user(4242, 0, &[0]));
        assert_eq!(resolve("4242", None, None, "web"), Ok(user(4242, 0, &[0])));
    }

    #[test]
    fn uid_and_gid_are_used_as_given_without_supplementary_groups() {
        assert_eq!(resolve_ok("1000:50"), user(1000, 50, &[50]));
        assert_eq!(resolve("5:6", None, None, "web"), Ok(user(5, 6, &[6])));
    }

    #[test]
    fn name_and_group_name() {
        assert_eq!(resolve_ok("app:staff"), user(1000, 50, &[50]));
    }

    #[test]
    fn uid_and_group_name() {
        assert_eq!(resolve_ok("4242:docker"), user(4242, 999, &[999]));
    }

    #[test]
    fn name_and_gid() {
        assert_eq!(resolve_ok("web:7"), user(1001, 7, &[7]));
    }

    #[test]
    fn empty_user_is_root_with_its_groups() {
        assert_eq!(resolve_ok(""), user(0, 0, &[0, 1, 999]));
        assert_eq!(resolve("", None, None, "web"), Ok(user(0, 0, &[0])));
    }

    #[test]
    fn unknown_user_names_the_user_and_passwd() {
        let err = resolve("nobody", Some(PASSWD), Some(GROUP), "web").expect_err("unknown");
        assert_eq!(
            err,
            SpecError::UnknownUser {
                container: "web".into(),
                user: "nobody".into()
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("nobody") && msg.contains("/etc/passwd"),
            "{msg}"
        );
        // no passwd file read at all
        assert!(matches!(
            resolve("app", None, None, "web"),
            Err(SpecError::UnknownUser { .. })
        ));
        // a malformed line does not define a user
        assert!(matches!(
            resolve("evil", Some(PASSWD), Some(GROUP), "web"),
            Err(SpecError::UnknownUser { .. })
        ));
    }

    #[test]
    fn unknown_group_names_the_group() {
        let err = resolve("app:nogroup", Some(PASSWD), Some(GROUP), "web").expect_err("unknown");
        assert_eq!(
            err,
            SpecError::UnknownGroup {
                container: "web".into(),
                group: "nogroup".into()
            }
        );
        assert!(err.to_string().contains("/etc/group"));
        assert!(matches!(
            resolve("0:bad", Some(PASSWD), Some(GROUP), "web"),
            Err(SpecError::UnknownGroup { .. })
        ));
    }

    #[test]
    fn malformed_and_out_of_range_users() {
        for bad in [":5", "app:", "a:b:c"] {
            assert_eq!(
                resolve(bad, Some(PASSWD), Some(GROUP), "web"),
                Err(SpecError::InvalidUser {
                    container: "web".into(),
                    user: bad.into()
                }),
                "{bad}"
            );
        }
        for bad in ["2147483648", "99999999999999999999", "0:2147483648"] {
            assert!(
                matches!(
                    resolve(bad, Some(PASSWD), Some(GROUP), "web"),
                    Err(SpecError::IdOutOfRange { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(resolve_ok("2147483647"), user(2147483647, 0, &[0]));
    }

    #[test]
    fn needs_user_database_table() {
        let rows = [
            (None, true),
            (Some(""), true),
            (Some("app"), true),
            (Some("1000"), true),
            (Some("1000:1000"), false),
            (Some("app:staff"), true),
            (Some("1000:staff"), true),
            (Some("app:50"), true),
            (Some("a:b:c"), false),
        ];
        for (user, want) in rows {
            assert_eq!(needs_user_database(user), want, "{user:?}");
        }
    }
}

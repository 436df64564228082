//! The names of provisioned databases and users: made of `[a-z0-9_]` only, from the instance
//! name and the requirement id, within the engine's length limit.

use super::{CreatedDatabase, DatabaseServer, ProvisionError, ProvisionSpec};

/// Refuses names provisioning does not make (they may come from a journal) and names made on
/// another server.
pub(super) fn check_names(
    server: &DatabaseServer,
    names: &CreatedDatabase,
) -> Result<(), ProvisionError> {
    if names.server != server.name || names.kind != server.kind {
        return Err(ProvisionError::WrongServer {
            server: server.name.clone(),
            kind: server.kind,
            database: names.database.clone(),
            made_on: names.server.clone(),
            made_kind: names.kind,
        });
    }
    let max = server.kind.engine().max_name_len();
    for name in [&names.database, &names.login] {
        let ours = !name.is_empty()
            && name.len() <= max
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ours {
            return Err(server.invalid(
                name,
                format!("provisioned names are 1 to {max} of `a-z`, `0-9` and `_`"),
            ));
        }
    }
    Ok(())
}

/// `INSTANCE_ID` of `[a-z0-9_]`, runs of `_` made one, cut to `max_len`.
pub(super) fn name_base(spec: ProvisionSpec<'_>, max_len: usize) -> String {
    fn part(text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            let c = if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            };
            if !(c == '_' && (out.is_empty() || out.ends_with('_'))) {
                out.push(c);
            }
        }
        out.trim_end_matches('_').to_owned()
    }
    let instance = part(spec.instance);
    let requirement = part(spec.requirement);
    let instance = if instance.is_empty() {
        "aps"
    } else {
        &instance
    };
    let requirement = if requirement.is_empty() {
        "db"
    } else {
        &requirement
    };
    cut(&format!("{instance}_{requirement}"), max_len)
}

/// The `n`th name tried: `base`, then `base_n` with `base` cut to leave room.
pub(super) fn candidate(base: &str, n: u32, max_len: usize) -> String {
    if n == 1 {
        return cut(base, max_len);
    }
    let suffix = format!("_{n}");
    format!("{}{suffix}", cut(base, max_len - suffix.len()))
}

/// `name` (ASCII) cut to `len`, without a trailing `_`.
fn cut(name: &str, len: usize) -> String {
    name[..name.len().min(len)].trim_end_matches('_').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(instance: &'a str, requirement: &'a str) -> ProvisionSpec<'a> {
        ProvisionSpec {
            instance,
            requirement,
        }
    }
    #[test]
    fn names_are_safe_whatever_the_requirement_id_holds() {
        assert_eq!(name_base(spec("blog", "main"), 32), "blog_main");
        assert_eq!(
            name_base(spec("my-blog.2", "Main DB"), 32),
            "my_blog_2_main_db"
        );
        assert_eq!(
            name_base(spec("blog", "x`; DROP DATABASE y; -- '\"\\"), 32),
            "blog_x_drop_database_y"
        );
        assert_eq!(name_base(spec("blog", "ßø/../"), 32), "blog_db");
        let long = "a".repeat(63);
        assert_eq!(name_base(spec(&long, "main"), 32).len(), 32);
        assert_eq!(candidate("blog_main", 2, 32), "blog_main_2");
        assert_eq!(
            candidate(&"b".repeat(32), 17, 32),
            format!("{}_17", "b".repeat(29))
        );
        // A cut never leaves `__` before the suffix.
        assert_eq!(candidate("abc_defgh", 2, 6), "abc_2");
    }
}

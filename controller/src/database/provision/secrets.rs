//! The passwords of provisioning: a new user's, from the OS's random source, and the admin's,
//! from a file only root may have written and may read.

use std::io::Read;

use super::{DatabaseServer, ProvisionError};
use crate::secret::Secret;

/// Length of a provisioned user's password: 32 of 62 characters, about 190 bits.
pub const PASSWORD_LEN: usize = 32;

/// Characters of a password: safe unquoted in shells, URLs, INI and PHP files alike.
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A password file larger than this is not a password.
const MAX_PASSWORD_FILE: u64 = 4096;

/// [`PASSWORD_LEN`] characters of [`PASSWORD_ALPHABET`] from the OS's random source, without
/// modulo bias.
pub(super) fn random_password() -> Result<Secret, ProvisionError> {
    let mut random = std::fs::File::open("/dev/urandom").map_err(ProvisionError::Random)?;
    let mut password = String::with_capacity(PASSWORD_LEN);
    let mut bytes = [0u8; 64];
    // 248 = 4 × 62: bytes above it are dropped, so every character is equally likely.
    let limit = (256 / PASSWORD_ALPHABET.len() * PASSWORD_ALPHABET.len()) as u8;
    while password.len() < PASSWORD_LEN {
        random
            .read_exact(&mut bytes)
            .map_err(ProvisionError::Random)?;
        for b in bytes.iter().filter(|&&b| b < limit) {
            if password.len() == PASSWORD_LEN {
                break;
            }
            password.push(PASSWORD_ALPHABET[usize::from(*b) % PASSWORD_ALPHABET.len()] as char);
        }
    }
    Ok(Secret::new(password))
}

/// The admin password file's one line, after checking the file as [`DatabaseServer`] says.
pub(super) fn read_password_file(server: &DatabaseServer) -> Result<Secret, ProvisionError> {
    use rustix::fs::{FileType, Mode, OFlags};
    let path = &server.admin_password_file;
    let refuse = |problem: String, fix: String| ProvisionError::PasswordFile {
        server: server.name.clone(),
        path: path.clone(),
        problem,
        fix,
    };
    let create_it = format!(
        "write the admin password into it as root and `chmod 600 {path}`; \
         see docs/databases.md"
    );
    // NOFOLLOW: a symlink is refused, not followed; NONBLOCK: a FIFO does not hang the open.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::open(path.as_std_path(), flags | OFlags::NONBLOCK, Mode::empty())
        .map_err(|e| match e {
            rustix::io::Errno::LOOP => refuse(
                "is a symlink".into(),
                "name the file itself, not a link to it".into(),
            ),
            rustix::io::Errno::NOENT => refuse("does not exist".into(), create_it.clone()),
            e => refuse(
                format!("cannot be opened: {}", std::io::Error::from(e)),
                create_it.clone(),
            ),
        })?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| {
        refuse(
            format!("cannot be examined: {}", std::io::Error::from(e)),
            create_it.clone(),
        )
    })?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(refuse("is not a regular file".into(), create_it));
    }
    let me = rustix::process::geteuid().as_raw();
    if stat.st_uid != 0 && stat.st_uid != me {
        return Err(refuse(
            format!("is owned by uid {}, not by root", stat.st_uid),
            format!("`chown root {path}`"),
        ));
    }
    let mode = stat.st_mode & 0o7777;
    if mode & 0o027 != 0 {
        return Err(refuse(
            format!("has mode {mode:04o}: others may read it or its group may write it"),
            format!("`chmod 600 {path}`"),
        ));
    }
    if stat.st_size as u64 > MAX_PASSWORD_FILE {
        return Err(refuse(
            format!("holds {} bytes, more than a password", stat.st_size),
            format!("put only the password in {path}"),
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_PASSWORD_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(format!("cannot be read: {e}"), create_it.clone()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| refuse("is not UTF-8 text".into(), create_it.clone()))?;
    let password = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(refuse("is empty".into(), create_it));
    }
    if password.contains(['\n', '\r', '\0']) {
        return Err(refuse(
            "holds more than one line".into(),
            "put the password alone on its one line".into(),
        ));
    }
    Ok(Secret::new(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_random_and_of_the_safe_alphabet() {
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert_ne!(a.expose(), b.expose());
        for p in [&a, &b] {
            assert_eq!(p.expose().len(), PASSWORD_LEN);
            assert!(p.expose().bytes().all(|c| PASSWORD_ALPHABET.contains(&c)));
        }
    }
}

//! The upgrade round: an older package of the same application installed in a sandbox of its
//! own, seeded, upgraded to the package under test, and its data compared after.

use camino::Utf8Path;

use super::Context;
use super::steps;

pub(super) fn upgrade_round(cx: &mut Context<'_>, old_package: &Utf8Path) {
    cx.skip(
        &steps::upgrade_from(old_package.as_str()),
        "not written yet",
    );
}

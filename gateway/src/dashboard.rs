//! The live occupancy dashboard served at `GET /`: one self-contained page
//! (no CDN; the machines have no internet).

pub const PAGE: &str = include_str!("../assets/dashboard.html");

//! libvirt version numbers.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, micro: u32) -> Self {
        Version { major, minor, micro }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

impl FromStr for Version {
    type Err = String;

    /// Accepts `MAJOR.MINOR[.MICRO]` with decimal parts, e.g. `9.0.0` or `10.10`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not a libvirt version like 9.0.0");
        let parts: Vec<&str> = s.trim().split('.').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(bad());
        }
        let mut nums = [0u32; 3];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            nums[i] = p.parse().map_err(|_| bad())?;
        }
        Ok(Version::new(nums[0], nums[1], nums[2]))
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        assert_eq!("9.0.0".parse::<Version>().unwrap(), Version::new(9, 0, 0));
        assert_eq!("10.10".parse::<Version>().unwrap(), Version::new(10, 10, 0));
        assert!(Version::new(10, 10, 0) > Version::new(9, 10, 0));
        assert!(Version::new(3, 0, 0) > Version::new(2, 3, 0));
        for bad in ["", "9", "9.x.0", "9.0.0.1", "-1.0", "9..0", "v9.0.0", "99999999999.0"] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
        assert_eq!(Version::new(11, 3, 0).to_string(), "11.3.0");
    }
}

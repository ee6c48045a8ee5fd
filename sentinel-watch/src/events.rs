//! Sentinel's pub/sub events, parsed into types. Parsing never
//! fails: an unknown event or a payload that does not fit its event is kept as raw text and
//! flagged, never a crash.

use std::fmt;

/// The role in "instance details".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
    Sentinel,
}

impl Role {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "master" => Some(Self::Master),
            "slave" | "replica" => Some(Self::Replica),
            "sentinel" => Some(Self::Sentinel),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Replica => "replica",
            Self::Sentinel => "sentinel",
        }
    }
}

/// A host and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    pub ip: String,
    pub port: u16,
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// `<master|slave|sentinel> <name> <ip> <port> [@ <master-name> <master-ip> <master-port>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub role: Role,
    /// For a master its name; for a replica or Sentinel the `ip:port` (or run id) Sentinel uses.
    pub name: String,
    pub addr: Addr,
    /// The master this instance belongs to (replicas and Sentinels).
    pub master: Option<(String, Addr)>,
}

impl Instance {
    /// The master name this event concerns.
    pub fn master_name(&self) -> &str {
        match &self.master {
            Some((n, _)) => n,
            None => &self.name,
        }
    }
}

/// What an event carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Instance(Instance),
    /// `+odown`: details + `#quorum X/Y`.
    Odown {
        instance: Instance,
        votes: u32,
        quorum: u32,
    },
    /// `+monitor`: details + `quorum N`.
    Monitor {
        instance: Instance,
        quorum: u32,
    },
    /// `+set`: details + key/values.
    Set {
        instance: Instance,
        settings: Vec<(String, String)>,
    },
    /// `+new-epoch`: `<epoch>`.
    NewEpoch {
        epoch: u64,
    },
    /// `+vote-for-leader`: `<runid> <epoch>`.
    VoteForLeader {
        runid: String,
        epoch: u64,
    },
    /// `+switch-master`: `<master-name> <old-ip> <old-port> <new-ip> <new-port>`.
    SwitchMaster {
        master: String,
        old: Addr,
        new: Addr,
    },
    /// `+role-change`/`-role-change`: details + `new reported role is <role>`.
    RoleChange {
        instance: Instance,
        new_role: String,
    },
    /// Instance details followed by free text (`+sentinel-address-switch`, `-script-error`, ...).
    InstanceText {
        instance: Instance,
        text: String,
    },
    /// `+tilt`, `-tilt` and other free text.
    Text(String),
}

/// One event as published by one Sentinel.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The channel, e.g. `+sdown`.
    pub name: String,
    pub payload: Payload,
    /// The raw payload text, kept for logs and dedup.
    pub raw: String,
    /// The event is not one we know, or its payload did not fit: kept as raw text.
    pub unparsed: bool,
}

/// Events whose payload is instance details only.
pub const DETAIL_EVENTS: &[&str] = &[
    "+reset-master",
    "+slave",
    "+sentinel",
    "+sentinel-invalid-addr",
    "+sdown",
    "-sdown",
    "-odown",
    "-monitor",
    "+try-failover",
    "+elected-leader",
    "+failover-state-select-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+failover-state-reconf-slaves",
    "+selected-slave",
    "+promoted-slave",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
    "-failover-abort-not-elected",
    "+slave-reconf-sent",
    "+slave-reconf-sent-be",
    "+slave-reconf-inprog",
    "+slave-reconf-done",
    "-slave-reconf-sent-timeout",
    "+failover-end",
    "+failover-end-for-timeout",
    "+config-update-from",
    "+convert-to-slave",
    "+fix-slave-config",
    "+reboot",
];

/// Events whose payload is instance details then free text.
const DETAIL_TEXT_EVENTS: &[&str] = &[
    "+sentinel-address-switch",
    "+sentinel-address-update",
    "-script-error",
    "-script-timeout",
];

fn parse_addr(ip: &str, port: &str) -> Option<Addr> {
    Some(Addr {
        ip: ip.to_string(),
        port: port.parse().ok()?,
    })
}

/// Parses instance details from the front of `words`; returns them and the words left.
fn parse_instance<'a>(words: &'a [&'a str]) -> Option<(Instance, &'a [&'a str])> {
    let [role, name, ip, port, rest @ ..] = words else {
        return None;
    };
    let role = Role::parse(role)?;
    let addr = parse_addr(ip, port)?;
    let (master, rest) = match rest {
        ["@", mname, mip, mport, rest @ ..] => {
            (Some((mname.to_string(), parse_addr(mip, mport)?)), rest)
        }
        _ => (None, rest),
    };
    Some((
        Instance {
            role,
            name: name.to_string(),
            addr,
            master,
        },
        rest,
    ))
}

/// Parses one message: `channel` is the event name, `payload` its text.
pub fn parse(channel: &str, payload: &str) -> Event {
    let words: Vec<&str> = payload.split_whitespace().collect();
    let parsed = parse_payload(channel, &words, payload);
    let (payload_v, unparsed) = match parsed {
        Some(p) => (p, false),
        None => (Payload::Text(payload.to_string()), true),
    };
    Event {
        name: channel.to_string(),
        payload: payload_v,
        raw: payload.to_string(),
        unparsed,
    }
}

fn parse_payload(channel: &str, words: &[&str], raw: &str) -> Option<Payload> {
    if DETAIL_EVENTS.contains(&channel) {
        let (i, rest) = parse_instance(words)?;
        return rest.is_empty().then_some(Payload::Instance(i));
    }
    if DETAIL_TEXT_EVENTS.contains(&channel) {
        let (i, rest) = parse_instance(words)?;
        return Some(Payload::InstanceText {
            instance: i,
            text: rest.join(" "),
        });
    }
    match channel {
        "+odown" => parse_odown(words),
        "+monitor" => {
            let (instance, rest) = parse_instance(words)?;
            let ["quorum", n] = rest else { return None };
            Some(Payload::Monitor {
                instance,
                quorum: n.parse().ok()?,
            })
        }
        "+set" => {
            let (instance, rest) = parse_instance(words)?;
            if rest.is_empty() || rest.len() % 2 != 0 {
                return None;
            }
            Some(Payload::Set {
                instance,
                settings: rest
                    .chunks(2)
                    .map(|kv| (kv[0].to_string(), kv[1].to_string()))
                    .collect(),
            })
        }
        "+new-epoch" => {
            let [e] = words else { return None };
            Some(Payload::NewEpoch {
                epoch: e.parse().ok()?,
            })
        }
        "+vote-for-leader" => {
            let [runid, e] = words else { return None };
            Some(Payload::VoteForLeader {
                runid: runid.to_string(),
                epoch: e.parse().ok()?,
            })
        }
        "+switch-master" => {
            let [name, oip, oport, nip, nport] = words else {
                return None;
            };
            Some(Payload::SwitchMaster {
                master: name.to_string(),
                old: parse_addr(oip, oport)?,
                new: parse_addr(nip, nport)?,
            })
        }
        "+role-change" | "-role-change" => {
            let (instance, rest) = parse_instance(words)?;
            let ["new", "reported", "role", "is", role] = rest else {
                return None;
            };
            Some(Payload::RoleChange {
                instance,
                new_role: role.to_string(),
            })
        }
        "+tilt" | "-tilt" => Some(Payload::Text(raw.to_string())),
        _ => None,
    }
}

fn parse_odown(words: &[&str]) -> Option<Payload> {
    let (instance, rest) = parse_instance(words)?;
    let ["#quorum", q] = rest else { return None };
    let (votes, quorum) = q.split_once('/')?;
    Some(Payload::Odown {
        instance,
        votes: votes.parse().ok()?,
        quorum: quorum.parse().ok()?,
    })
}

impl Event {
    /// The master name this event is about, when it says.
    pub fn master_name(&self) -> Option<&str> {
        match &self.payload {
            Payload::SwitchMaster { master, .. } => Some(master),
            _ => self.instance().map(Instance::master_name),
        }
    }

    /// The instance the event is about, when it has one.
    pub fn instance(&self) -> Option<&Instance> {
        match &self.payload {
            Payload::Instance(i)
            | Payload::Odown { instance: i, .. }
            | Payload::Monitor { instance: i, .. }
            | Payload::Set { instance: i, .. }
            | Payload::RoleChange { instance: i, .. }
            | Payload::InstanceText { instance: i, .. } => Some(i),
            _ => None,
        }
    }

    /// Whether the event is about the master itself (not one of its replicas or Sentinels).
    pub fn is_about_master(&self) -> bool {
        self.instance().is_some_and(|i| i.role == Role::Master)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "master mymaster 127.0.0.1 6379";
    const REPLICA: &str = "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379";
    const SENTINEL: &str = "sentinel 5f6a4ae07e2c1b8e3e1d1f3a9b7c6d5e4f3a2b1c 127.0.0.1 26380 @ mymaster 127.0.0.1 6379";

    #[test]
    fn every_detail_event_parses_with_each_instance_kind() {
        for name in DETAIL_EVENTS {
            for details in [MASTER, REPLICA, SENTINEL] {
                let e = parse(name, details);
                assert!(!e.unparsed, "{name} {details}");
                let Payload::Instance(i) = &e.payload else {
                    panic!("{name}: {:?}", e.payload)
                };
                assert_eq!(i.master_name(), "mymaster", "{name}");
                assert_eq!(e.master_name(), Some("mymaster"));
            }
        }
        let e = parse("+sdown", REPLICA);
        let i = e.instance().expect("instance");
        assert_eq!(i.role, Role::Replica);
        assert_eq!(
            i.addr,
            Addr {
                ip: "127.0.0.1".into(),
                port: 6380
            }
        );
        assert!(!e.is_about_master());
        assert!(parse("+sdown", MASTER).is_about_master());
    }

    #[test]
    fn events_with_other_payloads() {
        let e = parse("+odown", &format!("{MASTER} #quorum 2/2"));
        assert_eq!(
            e.payload,
            Payload::Odown {
                instance: parse("+sdown", MASTER).instance().expect("i").clone(),
                votes: 2,
                quorum: 2
            }
        );
        assert!(matches!(
            parse("+monitor", &format!("{MASTER} quorum 2")).payload,
            Payload::Monitor { quorum: 2, .. }
        ));
        let e = parse("+set", &format!("{MASTER} down-after-milliseconds 1000"));
        assert!(
            matches!(&e.payload, Payload::Set { settings, .. } if settings == &vec![("down-after-milliseconds".to_string(), "1000".to_string())])
        );
        assert_eq!(
            parse("+new-epoch", "7").payload,
            Payload::NewEpoch { epoch: 7 }
        );
        assert_eq!(
            parse("+vote-for-leader", "5f6a4ae0 7").payload,
            Payload::VoteForLeader {
                runid: "5f6a4ae0".into(),
                epoch: 7
            }
        );
        let e = parse("+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 6380");
        assert_eq!(
            e.payload,
            Payload::SwitchMaster {
                master: "mymaster".into(),
                old: Addr {
                    ip: "127.0.0.1".into(),
                    port: 6379
                },
                new: Addr {
                    ip: "127.0.0.1".into(),
                    port: 6380
                },
            }
        );
        assert_eq!(e.master_name(), Some("mymaster"));
        for name in ["+role-change", "-role-change"] {
            let e = parse(name, &format!("{REPLICA} new reported role is master"));
            assert!(
                matches!(&e.payload, Payload::RoleChange { new_role, .. } if new_role == "master"),
                "{name}"
            );
        }
        for name in [
            "+sentinel-address-switch",
            "+sentinel-address-update",
            "-script-error",
            "-script-timeout",
        ] {
            let e = parse(name, &format!("{SENTINEL} some text here"));
            assert!(
                matches!(&e.payload, Payload::InstanceText { text, .. } if text == "some text here"),
                "{name}"
            );
        }
        assert_eq!(
            parse("+tilt", "#tilt mode entered").payload,
            Payload::Text("#tilt mode entered".into())
        );
        assert!(!parse("-tilt", "#tilt mode exited").unparsed);
    }

    #[test]
    fn malformed_and_unknown_are_kept_raw() {
        for (name, payload) in [
            ("+sdown", ""),
            ("+sdown", "master mymaster 127.0.0.1"),
            ("+sdown", "master mymaster 127.0.0.1 notaport"),
            ("+sdown", "bishop mymaster 127.0.0.1 6379"),
            ("+sdown", &format!("{MASTER} trailing")),
            ("+odown", &format!("{MASTER} #quorum two/3")),
            ("+odown", MASTER),
            ("+new-epoch", "seven"),
            ("+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1"),
            ("+switch-master", "mymaster 127.0.0.1 x 127.0.0.1 6380"),
            ("+set", &format!("{MASTER} odd")),
            ("+role-change", &format!("{REPLICA} new role master")),
            ("+brand-new-event", "whatever 1 2 3"),
            (
                "__sentinel__:hello",
                "127.0.0.1,26379,abc,0,mymaster,127.0.0.1,6379,0",
            ),
            ("+sdown", "master mymaster 127.0.0.1 6379 @ x 127.0.0.1"),
        ] {
            let e = parse(name, payload);
            assert!(e.unparsed, "{name} {payload:?} parsed as {:?}", e.payload);
            assert_eq!(e.raw, payload);
            assert_eq!(e.payload, Payload::Text(payload.to_string()));
        }
    }
}

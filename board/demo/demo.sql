-- The demo database of websql.html: what a router might keep about itself. The demo serves
-- board/demo/demo.db, which scripts/demo-db.py makes from this file (tests/py/test_demo_db.py
-- checks that the two agree); the demo's init_d copies it into its run directory, and writes
-- go to that copy.
--
-- Two columns show how the sql plugin maps values to JSON: interfaces.rx_bytes holds a
-- counter beyond 2^53 (sent as a string of its digits, which a JavaScript number would round),
-- and clients.client_id a blob (DHCP option 61, sent as {"base64": ".."}).

CREATE TABLE interfaces (
    name     TEXT PRIMARY KEY,
    mac      TEXT,                    -- NULL for interfaces without one (lo, wg0)
    mtu      INTEGER NOT NULL,
    up       INTEGER NOT NULL CHECK (up IN (0, 1)),
    rx_bytes INTEGER NOT NULL DEFAULT 0
);

INSERT INTO interfaces (name, mac, mtu, up, rx_bytes) VALUES
    ('lo',    NULL,                65536, 1, 48213344),
    ('eth0',  'a4:2b:b0:10:00:01',  1500, 1, 12345678901234567),
    ('br-lan','a4:2b:b0:10:00:02',  1500, 1, 981273645),
    ('wlan0', 'a4:2b:b0:10:00:03',  1500, 1, 2210398877),
    ('wlan1', 'a4:2b:b0:10:00:04',  1500, 0, 0),
    ('wg0',   NULL,                 1420, 1, 73400320);

-- DHCP leases. client_id is the client identifier the client sent (option 61): type 1
-- (Ethernet) and its MAC, or whatever bytes the client chose.
CREATE TABLE clients (
    mac       TEXT PRIMARY KEY,
    ip        TEXT NOT NULL UNIQUE,
    hostname  TEXT,
    iface     TEXT NOT NULL REFERENCES interfaces (name),
    client_id BLOB,
    last_seen TEXT NOT NULL           -- UTC, 'YYYY-MM-DD HH:MM:SS'
);

INSERT INTO clients (mac, ip, hostname, iface, client_id, last_seen) VALUES
    ('3c:22:fb:41:7a:10', '192.168.1.10', 'laptop',     'br-lan', X'013c22fb417a10', '2024-05-04 09:12:41'),
    ('b8:27:eb:5d:21:9c', '192.168.1.11', 'raspberrypi','br-lan', X'01b827eb5d219c', '2024-05-04 09:30:02'),
    ('00:11:32:aa:07:e3', '192.168.1.20', 'nas',        'br-lan', X'01001132aa07e3', '2024-05-04 09:31:15'),
    ('f0:18:98:0c:44:2d', '192.168.1.31', 'phone',      'wlan0',  X'ff0c442d00010001', '2024-05-04 09:29:47'),
    ('7c:d5:66:19:b2:08', '192.168.1.32', 'tablet',     'wlan1',  NULL,             '2024-05-03 21:05:10'),
    ('cc:50:e3:8e:11:6a', '192.168.1.40', 'thermostat', 'wlan0',  X'01cc50e38e116a', '2024-05-04 09:25:00'),
    ('44:17:93:3b:c0:d1', '192.168.1.41', NULL,         'wlan0',  X'014417933bc0d1', '2024-05-04 08:58:33');

-- The system log. level is syslog's name for it.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    time    TEXT NOT NULL,            -- UTC, 'YYYY-MM-DD HH:MM:SS'
    level   TEXT NOT NULL CHECK (level IN ('debug', 'info', 'notice', 'warning', 'err')),
    message TEXT NOT NULL
);

INSERT INTO events (time, level, message) VALUES
    ('2024-05-04 08:00:01', 'info',    'system booted, kernel 6.6.30'),
    ('2024-05-04 08:00:03', 'notice',  'eth0: link up, 1000 Mb/s full duplex'),
    ('2024-05-04 08:00:04', 'info',    'br-lan: entered forwarding state'),
    ('2024-05-04 08:00:06', 'info',    'wlan0: AP enabled, SSID "home"'),
    ('2024-05-04 08:00:06', 'warning', 'wlan1: no regulatory domain set, radio left down'),
    ('2024-05-04 08:00:09', 'info',    'wg0: handshake with peer office complete'),
    ('2024-05-04 08:00:12', 'notice',  'ntp: clock set, offset +0.132 s'),
    ('2024-05-04 08:58:33', 'info',    'dhcp: lease 192.168.1.41 to 44:17:93:3b:c0:d1'),
    ('2024-05-04 09:03:17', 'warning', 'dropbear: bad password for root from 192.168.1.32'),
    ('2024-05-04 09:12:41', 'info',    'dhcp: lease 192.168.1.10 to 3c:22:fb:41:7a:10 (laptop)'),
    ('2024-05-04 09:20:00', 'err',     'wg0: no handshake with peer office for 180 s'),
    ('2024-05-04 09:21:02', 'info',    'wg0: handshake with peer office complete'),
    ('2024-05-04 09:30:02', 'debug',   'dhcp: renew from raspberrypi');

-- The leases of interfaces that are up, with the interface's MTU.
CREATE VIEW active_clients AS
    SELECT c.hostname, c.ip, c.mac, c.iface, i.mtu, c.last_seen
    FROM clients AS c JOIN interfaces AS i ON i.name = c.iface
    WHERE i.up = 1;

-- How many events of each level.
CREATE VIEW event_counts AS
    SELECT level, count(*) AS events, max(time) AS latest
    FROM events GROUP BY level;

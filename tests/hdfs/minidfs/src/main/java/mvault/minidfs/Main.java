package mvault.minidfs;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.PrivilegedExceptionAction;
import java.time.LocalDateTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ThreadLocalRandom;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.DistributedFileSystem;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.MiniDFSNNTopology;
import org.apache.hadoop.hdfs.server.blockmanagement.BlockManagerTestUtil;
import org.apache.hadoop.hdfs.server.datanode.DataNode;
import org.apache.hadoop.hdfs.server.namenode.NameNode;
import org.apache.hadoop.security.UserGroupInformation;
import org.apache.kerby.kerberos.kerb.server.SimpleKdcServer;

/**
 * Test harness for mvault's HDFS integration tests: one JVM running a
 * MiniDFSCluster (real NameNode(s) and DataNodes), optionally with an
 * in-process Kerberos KDC. Driven by tests/hdfs/minidfs.sh; see
 * tests/hdfs/README.md for the contract.
 *
 * Usage: Main DIR [--datanodes N] [--replication R] [--blocksize B] [--ha] [--kerberos]
 *
 * Everything lives in DIR:
 *   cluster.properties  settings fixed at the first start (ports, flags)
 *   data/               MiniDFSCluster base dir (name/data dirs, shared edits)
 *   conf/               client core-site.xml / hdfs-site.xml (HADOOP_CONF_DIR)
 *   ctl/                control requests: NAME.cmd in, NAME.ack out
 *   url                 written (atomically) once the cluster accepts writes
 *   krb5.conf, client.keytab, client.principal, kdc/   with --kerberos
 */
public final class Main {
    static final String NAMESERVICE = "mvaultns";
    static final String REALM = "EXAMPLE.COM";
    static final String CLIENT_USER = "mvault";
    /** Fixed passwords: keys are derived from them, so they are identical on every restart. */
    static final String PASSWORD = "mvault-minidfs-test-only";

    final Path dir;
    final Properties state = new Properties();
    boolean ha;
    boolean kerberos;
    int datanodes;
    int replication;
    long blocksize;
    int[] nnPorts;
    int kdcPort;
    String url;

    SimpleKdcServer kdc;
    MiniDFSCluster cluster;
    Configuration conf;
    Configuration clientConf;
    final List<MiniDFSCluster.DataNodeProperties> killedDataNodes = new ArrayList<>();
    volatile boolean stopping;

    Main(Path dir) {
        this.dir = dir;
    }

    static void log(String msg) {
        System.err.println(LocalDateTime.now() + " [minidfs] " + msg);
        System.err.flush();
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: Main DIR [--datanodes N] [--replication R] [--blocksize B] [--ha] [--kerberos]");
            System.exit(2);
        }
        Main m = new Main(Path.of(args[0]).toAbsolutePath());
        try {
            m.configure(Arrays.copyOfRange(args, 1, args.length));
            m.start();
        } catch (Throwable t) {
            log("FATAL: start failed: " + t);
            t.printStackTrace();
            writeAtomically(m.dir.resolve("failed"), "start failed: " + oneLine(t) + "\n");
            Runtime.getRuntime().halt(1);
        }
        m.controlLoop();
    }

    static String oneLine(Throwable t) {
        String s = t.toString();
        Throwable c = t.getCause();
        while (c != null && c != t) {
            s = s + " <- " + c;
            t = c;
            c = c.getCause();
        }
        return s.replace('\n', ' ');
    }

    // ---------------------------------------------------------------- settings

    void configure(String[] args) throws IOException {
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("pid"), ProcessHandle.current().pid() + "\n");
        Path stateFile = dir.resolve("cluster.properties");
        boolean restart = Files.exists(stateFile);
        if (restart) {
            try (InputStream in = Files.newInputStream(stateFile)) {
                state.load(in);
            }
        }
        Map<String, String> given = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--ha": given.put("ha", "true"); break;
                case "--kerberos": given.put("kerberos", "true"); break;
                case "--datanodes": given.put("datanodes", args[++i]); break;
                case "--replication": given.put("replication", args[++i]); break;
                case "--blocksize": given.put("blocksize", args[++i]); break;
                default: throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        if (restart) {
            for (String k : new String[] {"ha", "kerberos"}) {
                if (given.containsKey(k) && !state.getProperty(k, "false").equals(given.get(k))) {
                    throw new IllegalArgumentException("--" + k + " differs from the first start of this DIR ("
                            + k + "=" + state.getProperty(k, "false") + "); use a fresh DIR");
                }
            }
        }
        state.putAll(given);
        ha = Boolean.parseBoolean(state.getProperty("ha", "false"));
        kerberos = Boolean.parseBoolean(state.getProperty("kerberos", "false"));
        datanodes = Integer.parseInt(state.getProperty("datanodes", "1"));
        if (datanodes < 0) {
            throw new IllegalArgumentException("--datanodes must be >= 0");
        }
        replication = state.containsKey("replication")
                ? Integer.parseInt(state.getProperty("replication"))
                : Math.max(1, Math.min(datanodes, 3));
        blocksize = Long.parseLong(state.getProperty("blocksize", String.valueOf(128L * 1024 * 1024)));

        if (!state.containsKey("nn.ports")) {
            int n = ha ? 2 : 1;
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < n; i++) {
                sb.append(i == 0 ? "" : ",").append(pickPort());
            }
            state.setProperty("nn.ports", sb.toString());
        }
        nnPorts = Arrays.stream(state.getProperty("nn.ports").split(",")).mapToInt(Integer::parseInt).toArray();
        if (kerberos && !state.containsKey("kdc.port")) {
            state.setProperty("kdc.port", String.valueOf(pickPort()));
        }
        kdcPort = Integer.parseInt(state.getProperty("kdc.port", "0"));
        url = ha ? "hdfs://" + NAMESERVICE : "hdfs://127.0.0.1:" + nnPorts[0];
        saveState();
        log("settings: restart=" + restart + " " + state);
    }

    void saveState() throws IOException {
        Path tmp = dir.resolve("cluster.properties.tmp");
        try (OutputStream out = Files.newOutputStream(tmp)) {
            state.store(out, "minidfs cluster settings (fixed at first start)");
        }
        Files.move(tmp, dir.resolve("cluster.properties"), StandardCopyOption.REPLACE_EXISTING,
                StandardCopyOption.ATOMIC_MOVE);
    }

    /**
     * A free port on 127.0.0.1 chosen below the Linux ephemeral range
     * (32768-60999), so that no outgoing connection of another process can
     * hold it when the cluster is restarted on the same port.
     */
    static int pickPort() throws IOException {
        InetAddress lo = InetAddress.getByName("127.0.0.1");
        for (int attempt = 0; attempt < 200; attempt++) {
            int p = ThreadLocalRandom.current().nextInt(20000, 32000);
            try (ServerSocket s = new ServerSocket()) {
                s.setReuseAddress(false);
                s.bind(new InetSocketAddress(lo, p));
                return p;
            } catch (IOException busy) {
                // try another
            }
        }
        throw new IOException("no free port found in 20000-32000");
    }

    // ---------------------------------------------------------------- startup

    void start() throws Exception {
        long t0 = System.currentTimeMillis();
        Path tmp = dir.resolve("tmp");
        Files.createDirectories(tmp);
        Path ctl = dir.resolve("ctl");
        Files.createDirectories(ctl);
        try (var files = Files.list(ctl)) {
            for (Path p : (Iterable<Path>) files::iterator) {
                Files.deleteIfExists(p);
            }
        }
        Files.deleteIfExists(dir.resolve("url"));
        Files.deleteIfExists(dir.resolve("failed"));

        conf = new HdfsConfiguration();
        clientConf = new Configuration(false);
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, dir.resolve("data").toString());
        conf.set("hadoop.tmp.dir", tmp.toString());

        both("dfs.replication", String.valueOf(replication));
        both("dfs.blocksize", String.valueOf(blocksize));
        // Tests may want tiny blocks (client-chosen block sizes too).
        conf.set("dfs.namenode.fs-limits.min-block-size", "0");
        conf.setBoolean("dfs.permissions.enabled", true);

        // Fast failure detection. A dead DataNode is declared dead after
        // 2 * recheck + 10 * heartbeat = 14 s, "stale" (avoided for reads
        // and new writes) after 3 s.
        conf.set("dfs.heartbeat.interval", "1");
        conf.set("dfs.namenode.heartbeat.recheck-interval", "2000");
        conf.set("dfs.namenode.stale.datanode.interval", "3000");
        conf.setBoolean("dfs.namenode.avoid.read.stale.datanode", true);
        conf.setBoolean("dfs.namenode.avoid.write.stale.datanode", true);
        conf.set("dfs.namenode.redundancy.interval.seconds", "1");
        conf.set("dfs.namenode.safemode.extension", "0");
        conf.set("dfs.namenode.safemode.min.datanodes", "0");
        conf.set("dfs.namenode.safemode.threshold-pct", "0.999f");
        conf.set("dfs.datanode.max.transfer.threads", "256");
        conf.set("dfs.namenode.handler.count", "10");
        conf.set("dfs.datanode.handler.count", "3");
        // IPC (the JVM's own clients, DataNode -> NameNode) gives up quickly.
        conf.set("ipc.client.connect.max.retries", "3");
        conf.set("ipc.client.connect.max.retries.on.timeouts", "3");
        conf.set("ipc.client.connect.retry.interval", "200");
        conf.set("ipc.client.connect.timeout", "3000");
        conf.set("dfs.client.retry.max.attempts", "3");
        conf.set("dfs.client.failover.max.attempts", "5");
        conf.set("dfs.client.failover.sleep.base.millis", "100");
        conf.set("dfs.client.failover.sleep.max.millis", "1000");
        conf.set("dfs.client.block.write.locateFollowingBlock.retries", "5");
        conf.set("dfs.client.socket-timeout", "20000");
        conf.set("dfs.datanode.socket.write.timeout", "20000");
        // The cluster's web UIs bind to 127.0.0.1 (MiniDFSCluster does that for
        // HTTP); HTTPS stays off.
        conf.set("dfs.http.policy", "HTTP_ONLY");

        if (ha) {
            conf.set("dfs.ha.tail-edits.period", "1s");
            conf.set("dfs.ha.log-roll.period", "10s");
            conf.setBoolean("dfs.ha.automatic-failover.enabled", false);
            // Fencing is not needed inside one JVM, but the key must parse.
            conf.set("dfs.ha.fencing.methods", "shell(/bin/true)");
        }

        if (kerberos) {
            startKdc();
            String svc = "hdfs/localhost@" + REALM;
            String http = "HTTP/localhost@" + REALM;
            String keytab = dir.resolve("kdc/hdfs.keytab").toString();
            both("hadoop.security.authentication", "kerberos");
            conf.set("hadoop.security.authorization", "false");
            both("hadoop.rpc.protection", "privacy");
            both("dfs.data.transfer.protection", "privacy");
            both("dfs.namenode.kerberos.principal", svc);
            conf.set("dfs.namenode.keytab.file", keytab);
            both("dfs.datanode.kerberos.principal", svc);
            conf.set("dfs.datanode.keytab.file", keytab);
            conf.set("dfs.web.authentication.kerberos.principal", http);
            conf.set("dfs.web.authentication.kerberos.keytab", keytab);
            conf.set("dfs.namenode.kerberos.internal.spnego.principal", http);
            conf.set("dfs.secondary.namenode.kerberos.principal", svc);
            conf.set("dfs.secondary.namenode.keytab.file", keytab);
            conf.setBoolean("dfs.block.access.token.enable", true);
            // Non-privileged DataNode ports with SASL data transfer.
            conf.setBoolean("ignore.secure.ports.for.testing", true);
            conf.set("ipc.client.connect.max.retries.on.sasl", "10");
            UserGroupInformation.setConfiguration(conf);
            UserGroupInformation.loginUserFromKeytab(svc, keytab);
            log("logged in as " + UserGroupInformation.getLoginUser());
        } else {
            both("hadoop.security.authentication", "simple");
        }

        boolean format = !"true".equals(state.getProperty("formatted"));
        MiniDFSNNTopology topo = new MiniDFSNNTopology();
        MiniDFSNNTopology.NSConf ns = new MiniDFSNNTopology.NSConf(ha ? NAMESERVICE : null);
        for (int i = 0; i < nnPorts.length; i++) {
            ns.addNN(new MiniDFSNNTopology.NNConf(ha ? "nn" + (i + 1) : null).setIpcPort(nnPorts[i]).setHttpPort(0));
        }
        topo.addNameservice(ns);

        log("starting MiniDFSCluster: format=" + format + " ha=" + ha + " kerberos=" + kerberos
                + " datanodes=" + datanodes + " replication=" + replication + " blocksize=" + blocksize);
        cluster = new MiniDFSCluster.Builder(conf)
                .nnTopology(topo)
                .numDataNodes(datanodes)
                .format(format)
                .checkExitOnShutdown(false)
                .build();
        if (ha) {
            cluster.transitionToActive(0);
        }
        cluster.waitActive();
        log("cluster up after " + (System.currentTimeMillis() - t0) + " ms");

        writeClientConf();
        Runtime.getRuntime().addShutdownHook(new Thread(this::shutdownQuietly, "minidfs-shutdown"));

        probeWrite(format);
        if (format) {
            state.setProperty("formatted", "true");
            saveState();
        }
        writeAtomically(dir.resolve("url"), url + "\n");
        log("READY " + url + " after " + (System.currentTimeMillis() - t0) + " ms");
    }

    /** Sets a key for the cluster and for the client configuration in DIR/conf. */
    void both(String key, String value) {
        conf.set(key, value);
        clientConf.set(key, value);
    }

    void startKdc() throws Exception {
        Path kdcDir = dir.resolve("kdc");
        Files.createDirectories(kdcDir);
        Path krb5 = dir.resolve("krb5.conf");
        String krb5Text = "[libdefaults]\n"
                + "  default_realm = " + REALM + "\n"
                + "  udp_preference_limit = 1\n"
                + "  dns_lookup_kdc = false\n"
                + "  dns_lookup_realm = false\n"
                + "  dns_canonicalize_hostname = false\n"
                + "  rdns = false\n"
                + "  ignore_acceptor_hostname = true\n"
                + "  forwardable = true\n"
                + "  ticket_lifetime = 24h\n"
                + "  renew_lifetime = 7d\n"
                + "\n[realms]\n"
                + "  " + REALM + " = {\n"
                + "    kdc = 127.0.0.1:" + kdcPort + "\n"
                + "  }\n"
                + "\n[domain_realm]\n"
                + "  localhost = " + REALM + "\n"
                + "  .localhost = " + REALM + "\n"
                + "  127.0.0.1 = " + REALM + "\n";
        writeAtomically(krb5, krb5Text);
        System.setProperty("java.security.krb5.conf", krb5.toString());
        System.setProperty("javax.security.auth.useSubjectCredsOnly", "true");

        kdc = new SimpleKdcServer();
        kdc.setWorkDir(kdcDir.toFile());
        kdc.setKdcRealm(REALM);
        kdc.setKdcHost("127.0.0.1");
        kdc.setAllowUdp(false);
        kdc.setAllowTcp(true);
        kdc.setKdcTcpPort(kdcPort);
        kdc.init();
        // Replace the random-keyed built-in krbtgt by a password-derived one so
        // that tickets issued before a restart stay valid after it.
        String tgt = "krbtgt/" + REALM + "@" + REALM;
        kdc.deletePrincipal(tgt);
        kdc.createPrincipal(tgt, PASSWORD + "-krbtgt");

        Path svcKeytab = kdcDir.resolve("hdfs.keytab");
        Files.deleteIfExists(svcKeytab);
        for (String p : new String[] {"hdfs/localhost", "HTTP/localhost", "hdfs/127.0.0.1"}) {
            String full = p + "@" + REALM;
            kdc.createPrincipal(full, PASSWORD + "-" + p);
            kdc.exportPrincipal(full, svcKeytab.toFile());
        }
        String client = CLIENT_USER + "@" + REALM;
        kdc.createPrincipal(client, PASSWORD + "-" + CLIENT_USER);
        Path clientKeytab = dir.resolve("client.keytab");
        Path tmpKeytab = kdcDir.resolve("client.keytab.tmp");
        Files.deleteIfExists(tmpKeytab);
        kdc.exportPrincipal(client, tmpKeytab.toFile());
        Files.setPosixFilePermissions(tmpKeytab, PosixFilePermissions.fromString("rw-------"));
        Files.setPosixFilePermissions(svcKeytab, PosixFilePermissions.fromString("rw-------"));
        moveAtomically(tmpKeytab, clientKeytab);
        writeAtomically(dir.resolve("client.principal"), client + "\n");
        kdc.start();
        log("KDC for " + REALM + " listening on 127.0.0.1:" + kdcPort + " (tcp)");
    }

    void writeClientConf() throws IOException {
        clientConf.set("fs.defaultFS", url);
        if (ha) {
            clientConf.set("dfs.nameservices", NAMESERVICE);
            clientConf.set("dfs.ha.namenodes." + NAMESERVICE, "nn1,nn2");
            for (int i = 0; i < nnPorts.length; i++) {
                clientConf.set("dfs.namenode.rpc-address." + NAMESERVICE + ".nn" + (i + 1), "127.0.0.1:" + nnPorts[i]);
                NameNode nn = cluster.getNameNode(i);
                if (nn != null && nn.getHttpAddress() != null) {
                    clientConf.set("dfs.namenode.http-address." + NAMESERVICE + ".nn" + (i + 1),
                            "127.0.0.1:" + nn.getHttpAddress().getPort());
                }
            }
            clientConf.set("dfs.client.failover.proxy.provider." + NAMESERVICE,
                    "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider");
            conf.set("dfs.client.failover.proxy.provider." + NAMESERVICE,
                    "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider");
        } else {
            clientConf.set("dfs.namenode.rpc-address", "127.0.0.1:" + nnPorts[0]);
            NameNode nn = cluster.getNameNode(0);
            if (nn.getHttpAddress() != null) {
                clientConf.set("dfs.namenode.http-address", "127.0.0.1:" + nn.getHttpAddress().getPort());
            }
        }
        for (String k : new String[] {"ipc.client.connect.max.retries", "ipc.client.connect.max.retries.on.timeouts",
                "ipc.client.connect.retry.interval", "ipc.client.connect.timeout", "dfs.client.retry.max.attempts",
                "dfs.client.failover.max.attempts", "dfs.client.failover.sleep.base.millis",
                "dfs.client.failover.sleep.max.millis", "dfs.client.socket-timeout"}) {
            clientConf.set(k, conf.get(k));
        }
        Path confDir = dir.resolve("conf");
        Files.createDirectories(confDir);
        Configuration core = new Configuration(false);
        Configuration hdfs = new Configuration(false);
        for (Map.Entry<String, String> e : clientConf) {
            String k = e.getKey();
            boolean isCore = k.startsWith("fs.") || k.startsWith("hadoop.") || k.startsWith("ipc.");
            (isCore ? core : hdfs).set(k, e.getValue());
        }
        writeXml(core, confDir.resolve("core-site.xml"));
        writeXml(hdfs, confDir.resolve("hdfs-site.xml"));
    }

    static void writeXml(Configuration c, Path target) throws IOException {
        Path tmp = target.resolveSibling(target.getFileName() + ".tmp");
        try (OutputStream out = Files.newOutputStream(tmp)) {
            c.writeXml(out);
        }
        moveAtomically(tmp, target);
    }

    /** A client of the cluster as a separate DFS client (HA: through the failover proxy). */
    FileSystem newClient() throws Exception {
        Configuration c = new Configuration(conf);
        for (Map.Entry<String, String> e : clientConf) {
            c.set(e.getKey(), e.getValue());
        }
        return UserGroupInformation.getLoginUser().doAs(
                (PrivilegedExceptionAction<FileSystem>) () -> FileSystem.newInstance(URI.create(url), c));
    }

    /** Create/write/read/delete through a real DFS client; on the first start also open "/" for all. */
    void probeWrite(boolean firstStart) throws Exception {
        long deadline = System.currentTimeMillis() + 60_000;
        Exception last = null;
        while (System.currentTimeMillis() < deadline) {
            try (FileSystem fs = newClient()) {
                if (firstStart) {
                    // Tests run as any user (simple auth: OS user; Kerberos:
                    // mvault@REALM), so let everyone create top-level entries.
                    fs.setPermission(new org.apache.hadoop.fs.Path("/"), new FsPermission((short) 0777));
                }
                probe(fs, datanodes > 0);
                return;
            } catch (Exception e) {
                last = e;
                log("probe not yet successful: " + oneLine(e));
                Thread.sleep(500);
            }
        }
        throw new IOException("cluster did not accept a test write within 60 s", last);
    }

    static void probe(FileSystem fs, boolean withData) throws IOException {
        org.apache.hadoop.fs.Path p = new org.apache.hadoop.fs.Path("/.minidfs-probe-" + ProcessHandle.current().pid()
                + "-" + System.nanoTime());
        byte[] payload = ("minidfs probe " + p).getBytes(StandardCharsets.UTF_8);
        try (FSDataOutputStream out = fs.create(p, true)) {
            if (withData) {
                out.write(payload);
            }
        }
        if (withData) {
            byte[] back = new byte[payload.length];
            try (FSDataInputStream in = fs.open(p)) {
                in.readFully(back);
            }
            if (!Arrays.equals(back, payload)) {
                throw new IOException("probe read back different bytes");
            }
        }
        if (!fs.delete(p, false)) {
            throw new IOException("probe delete failed");
        }
    }

    // ---------------------------------------------------------------- control

    void controlLoop() {
        Path ctl = dir.resolve("ctl");
        while (true) {
            try {
                if (!Files.isDirectory(ctl)) {
                    log("DIR/ctl vanished (DIR deleted?): exiting at once");
                    Runtime.getRuntime().halt(3);
                }
                List<Path> cmds = new ArrayList<>();
                try (var files = Files.list(ctl)) {
                    files.filter(p -> p.getFileName().toString().endsWith(".cmd")).sorted().forEach(cmds::add);
                }
                for (Path cmdFile : cmds) {
                    String name = cmdFile.getFileName().toString();
                    Path ack = ctl.resolve(name.substring(0, name.length() - 4) + ".ack");
                    String cmd = Files.readString(cmdFile).trim();
                    Files.deleteIfExists(cmdFile);
                    log("control: " + cmd);
                    String result;
                    boolean exit = false;
                    try {
                        String[] w = cmd.split("\\s+");
                        if (w[0].equals("stop")) {
                            exit = true;
                            stopping = true;
                            long t = System.currentTimeMillis();
                            shutdownQuietly();
                            result = "ok stopped in " + (System.currentTimeMillis() - t) + " ms";
                        } else {
                            result = "ok " + execute(w);
                        }
                    } catch (Throwable t) {
                        log("control command failed: " + t);
                        t.printStackTrace();
                        result = "error " + oneLine(t);
                    }
                    log("control result: " + result);
                    writeAtomically(ack, result + "\n");
                    if (exit) {
                        Files.deleteIfExists(dir.resolve("url"));
                        Runtime.getRuntime().halt(0);
                    }
                }
                Thread.sleep(100);
            } catch (Throwable t) {
                log("control loop error: " + t);
                try {
                    Thread.sleep(500);
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                }
            }
        }
    }

    String execute(String[] w) throws Exception {
        switch (w[0]) {
            case "ping":
                return "pong";
            case "info":
                return info();
            case "kill-datanode": {
                int i = Integer.parseInt(w[1]);
                boolean markDead = w.length > 2 && w[2].equals("dead");
                List<DataNode> dns = cluster.getDataNodes();
                if (i < 0 || i >= dns.size()) {
                    throw new IllegalArgumentException("no running DataNode " + i + " (" + dns.size() + " running)");
                }
                String addr = xfer(dns.get(i));
                MiniDFSCluster.DataNodeProperties props = cluster.stopDataNode(i);
                killedDataNodes.add(props);
                if (markDead) {
                    for (int n = 0; n < nnPorts.length; n++) {
                        if (cluster.isNameNodeUp(n)) {
                            BlockManagerTestUtil.noticeDeadDatanode(cluster.getNameNode(n), addr);
                        }
                    }
                }
                return "stopped datanode " + i + " " + addr + (markDead ? " (marked dead)" : "")
                        + "; running " + cluster.getDataNodes().size();
            }
            case "restart-datanodes": {
                int n = killedDataNodes.size();
                for (MiniDFSCluster.DataNodeProperties p : killedDataNodes) {
                    cluster.restartDataNode(p, false);
                }
                killedDataNodes.clear();
                cluster.waitActive();
                return "restarted " + n + " datanodes; running " + cluster.getDataNodes().size();
            }
            case "failover": {
                requireHa();
                int active = activeIndex();
                if (active < 0) {
                    throw new IllegalStateException("no active NameNode");
                }
                int other = 1 - active;
                if (!cluster.isNameNodeUp(other) || cluster.getNameNode(other) == null) {
                    throw new IllegalStateException("nn" + (other + 1) + " is down; run restart-namenode "
                            + other + " first");
                }
                cluster.shutdownNameNode(active);
                cluster.transitionToActive(other);
                // Serve: a direct client of the new active must work.
                DistributedFileSystem fs = UserGroupInformation.getLoginUser()
                        .doAs((PrivilegedExceptionAction<DistributedFileSystem>) () -> cluster.getFileSystem(other));
                probe(fs, !cluster.getDataNodes().isEmpty());
                return "nn" + (active + 1) + " down, nn" + (other + 1) + " active";
            }
            case "restart-namenode": {
                requireHa();
                int i = Integer.parseInt(w[1]);
                if (cluster.getNameNode(i) != null && cluster.isNameNodeUp(i)) {
                    throw new IllegalStateException("nn" + (i + 1) + " is running");
                }
                cluster.restartNameNode(i, false);
                return "nn" + (i + 1) + " restarted as standby";
            }
            default:
                throw new IllegalArgumentException("unknown control command " + w[0]);
        }
    }

    static String xfer(DataNode dn) {
        InetSocketAddress a = dn.getXferAddress();
        return a.getAddress().getHostAddress() + ":" + a.getPort();
    }

    void requireHa() {
        if (!ha) {
            throw new IllegalStateException("only with --ha");
        }
    }

    int activeIndex() {
        for (int i = 0; i < nnPorts.length; i++) {
            NameNode nn = cluster.getNameNode(i);
            if (nn != null && cluster.isNameNodeUp(i) && nn.isActiveState()) {
                return i;
            }
        }
        return -1;
    }

    String info() {
        StringBuilder sb = new StringBuilder("url=" + url);
        for (int i = 0; i < nnPorts.length; i++) {
            NameNode nn = cluster.getNameNode(i);
            String st = nn == null || !cluster.isNameNodeUp(i) ? "down" : nn.isActiveState() ? "active" : "standby";
            sb.append(" nn").append(i + 1).append("=127.0.0.1:").append(nnPorts[i]).append(':').append(st);
        }
        sb.append(" datanodes=");
        List<DataNode> dns = cluster.getDataNodes();
        for (int i = 0; i < dns.size(); i++) {
            sb.append(i == 0 ? "" : ",").append(xfer(dns.get(i)));
        }
        sb.append(" killed=").append(killedDataNodes.size());
        return sb.toString();
    }

    synchronized void shutdownQuietly() {
        try {
            if (cluster != null) {
                log("shutting down MiniDFSCluster");
                cluster.shutdown(false);
                cluster = null;
            }
        } catch (Throwable t) {
            log("cluster shutdown: " + t);
        }
        try {
            if (kdc != null) {
                kdc.stop();
                kdc = null;
            }
        } catch (Throwable t) {
            log("kdc shutdown: " + t);
        }
    }

    // ---------------------------------------------------------------- files

    static void writeAtomically(Path target, String text) throws IOException {
        Path tmp = target.resolveSibling(target.getFileName() + ".tmp" + ProcessHandle.current().pid());
        Files.writeString(tmp, text);
        moveAtomically(tmp, target);
    }

    static void moveAtomically(Path from, Path to) throws IOException {
        try {
            Files.move(from, to, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(from, to, StandardCopyOption.REPLACE_EXISTING);
        }
    }
}

// This class lives in org.elasticsearch.node (a split package on the classpath) because
// NodeConstruction, NodeServiceProvider and the Node(NodeConstruction) constructor are
// package-private: it is the only way to plug our own plugin list into a real node.
package org.elasticsearch.node;

import deeplens.esnode.RootPlugin;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.http.HttpServerTransport;
import org.elasticsearch.plugins.MockPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsService;
import org.elasticsearch.transport.netty4.Netty4Plugin;

import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Test harness (not product code): one real Elasticsearch core node in this JVM.
 *
 * Usage: java -cp ... org.elasticsearch.node.DeepLensTestNode HOME_DIR [HTTP_PORT]
 *
 * We skip org.elasticsearch.bootstrap.Elasticsearch on purpose: it wants server-cli's serialized
 * arguments on stdin, installs a SecurityManager and refuses to run as root (CI runs as root).
 * Only the server core + Netty4 HTTP transport + our RootPlugin are loaded (no x-pack, no modules).
 *
 * Protocol with tests/esnode/harness.py: logs go to stderr; once HTTP is bound one line
 * "READY http://127.0.0.1:PORT" goes to stdout; the node closes when stdin reaches EOF.
 */
public class DeepLensTestNode extends Node {

    private static final Collection<Class<? extends Plugin>> PLUGINS = List.of(Netty4Plugin.class, RootPlugin.class);

    DeepLensTestNode(Environment environment) {
        super(NodeConstruction.prepareConstruction(environment, new NodeServiceProvider() {
            @Override
            PluginsService newPluginService(Environment env, Settings settings) {
                // The classpath-plugin variant of PluginsService, from the test framework.
                return new MockPluginsService(settings, env, PLUGINS);
            }
        }, true));
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: DeepLensTestNode HOME_DIR [HTTP_PORT]");
            System.exit(2);
        }
        // LogConfigurator later redirects System.out into log4j; keep the real stdout for READY.
        final PrintStream stdout = System.out;
        final InputStream stdin = System.in;

        Path home = Path.of(args[0]).toAbsolutePath();
        String httpPort = args.length > 1 ? args[1] : "0"; // 0: the OS picks a free port, reported in READY
        Path config = home.resolve("config");
        // PluginsService scans these directories, so they must exist (empty: classpath plugins only).
        Files.createDirectories(config);
        Files.createDirectories(home.resolve("modules"));
        Files.createDirectories(home.resolve("plugins"));
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));
        try (InputStream in = DeepLensTestNode.class.getResourceAsStream("/deeplens-esnode-log4j2.properties")) {
            Files.copy(in, config.resolve("log4j2.properties"), StandardCopyOption.REPLACE_EXISTING);
        }

        Settings settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("node.name", "deeplens-test-node")
            .put("cluster.name", "deeplens-test")
            .put("network.host", "127.0.0.1")
            .put("http.port", httpPort)
            .put("transport.port", "0")
            .put("discovery.type", "single-node")
            // Test machines have little free disk; the watermarks would block shard allocation.
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .build();

        LogConfigurator.registerErrorListener();
        Environment env = InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), config, () -> "deeplens-test-node");
        LogConfigurator.setNodeName("deeplens-test-node");
        LogConfigurator.configure(env, true);

        DeepLensTestNode node = new DeepLensTestNode(env);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> closeQuietly(node)));
        node.start();

        var address = node.injector().getInstance(HttpServerTransport.class).boundAddress().publishAddress();
        stdout.println("READY http://" + address.getAddress() + ":" + address.getPort());
        stdout.flush();

        // Block until the harness closes our stdin (or dies), then shut down cleanly.
        try (BufferedReader reader = new BufferedReader(new InputStreamReader(stdin, StandardCharsets.UTF_8))) {
            while (reader.readLine() != null) {
                // ignore input; only EOF matters
            }
        }
        closeQuietly(node);
        System.exit(0);
    }

    private static void closeQuietly(Node node) {
        try {
            if (node.isClosed() == false) {
                node.close();
                node.awaitClose(10, TimeUnit.SECONDS);
            }
        } catch (Exception e) {
            e.printStackTrace();
        }
    }
}

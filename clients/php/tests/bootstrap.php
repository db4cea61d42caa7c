<?php

declare(strict_types=1);

// The package's PSR-4 autoloading, without Composer: Anonstats\Client\ is
// src/, Anonstats\Client\Tests\ is tests/.
spl_autoload_register(static function (string $class): void {
    $roots = [
        'Anonstats\\Client\\Tests\\' => __DIR__ . '/',
        'Anonstats\\Client\\' => dirname(__DIR__) . '/src/',
    ];
    foreach ($roots as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }

            return;
        }
    }
});

if (!extension_loaded('curl')) {
    fwrite(STDERR, "the PHP curl extension is required (php-curl)\n");
    exit(1);
}

<?php
// The quick start's guestbook (README): one page, its entries in the MariaDB database `main`.
echo "<h1>Guestbook</h1>\n";
